// GET /tail: Server-Sent Events of the records passing through the pipeline, filtered per
// subscriber (store-independent; loop thread only). A slow subscriber loses records, counted
// and told to it, never slows the pipeline.
#pragma once

#include <devmesh/plugin.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>

#include "query_json.h"
#include "query_params.h"

namespace devmesh::query {

class Tail {
 public:
  Tail(const dm_host_api *host, dm_instance *inst, uint32_t max_clients, size_t buffer_bytes,
       TimeFormat tf);
  ~Tail();
  Tail(const Tail &) = delete;
  Tail &operator=(const Tail &) = delete;
  // Starts the event stream on req, or answers an error (it always completes req).
  void subscribe(dm_http_request *req, TailFilter filter);
  // Sends each matching record of the batch to each subscriber.
  void publish(const dm_batch &batch);
  // Ends every stream (plugin stop); their on_close follows from the loop.
  void close_all();

 private:
  struct Subscriber {
    Tail *tail;
    dm_http_request *req;
    TailFilter filter;
    uint64_t dropped = 0;  // records lost since the last one it got (told as an SSE comment)
    bool open = true;
  };
  static void on_close(void *arg);
  static void on_heartbeat(void *arg);
  bool available() const;
  void render(const dm_record &r);
  // DM_OK, DM_ERR_FULL (dropped for this subscriber) or DM_ERR (gone).
  int write(Subscriber &s, const char *data, size_t len);

  const dm_host_api *host_;
  dm_instance *inst_;
  uint32_t max_clients_;
  size_t buffer_bytes_;
  TimeFormat tf_;
  std::list<Subscriber> subs_;
  dm_timer *heartbeat_ = nullptr;
  rapidjson::StringBuffer event_;  // one record's "data: {...}\n\n", reused
  std::string scratch_;
  dm_metric *m_clients_, *m_sent_, *m_dropped_, *m_refused_;
};

}  // namespace devmesh::query
