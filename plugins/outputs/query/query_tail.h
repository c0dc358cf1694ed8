// GET /tail: Server-Sent Events of the records passing through the pipeline, filtered per
// subscriber (store-independent; loop thread only). A slow subscriber loses records, counted
// and told to it, never slows the pipeline. Every event carries an id (EventId); the records
// of the last tail_history bytes are kept, so a client that reconnects with Last-Event-ID gets
// those it missed, or an "event: gap" when they are no longer kept.
#pragma once

#include <devmesh/plugin.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <string>
#include <string_view>

#include "query_json.h"
#include "query_params.h"

namespace devmesh::query {

class Tail {
 public:
  Tail(const dm_host_api *host, dm_instance *inst, uint32_t max_clients, size_t buffer_bytes,
       size_t history_bytes, TimeFormat tf);
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
  // A record as it was sent, with what the filters look at.
  struct Kept {
    uint64_t seq;
    int level;
    std::string service, host, message, event;
  };
  static void on_close(void *arg);
  static void on_heartbeat(void *arg);
  bool available() const;
  static bool wants(const TailFilter &f, int level, std::string_view service, std::string_view host,
                    std::string_view message);
  // Whether records are kept now: while anyone is subscribed and for a while after the last one
  // left (long enough for a browser's reconnect), so an idle /tail costs the pipeline nothing.
  bool keeping(uint64_t now_ns) const;
  void keep(const dm_record &r);
  // Sends what the subscriber missed after `after` (or a gap event and all that is kept).
  void replay(Subscriber &s, const EventId &after);
  void render(const dm_record &r, uint64_t seq);
  // DM_OK, DM_ERR_FULL (dropped for this subscriber) or DM_ERR (gone).
  int write(Subscriber &s, const char *data, size_t len);

  const dm_host_api *host_;
  dm_instance *inst_;
  uint32_t max_clients_;
  size_t buffer_bytes_;
  size_t history_limit_;
  TimeFormat tf_;
  uint64_t stream_;   // this start's id: its realtime clock in microseconds
  uint64_t seq_ = 0;  // the last record's number (each record passing through gets the next)
  std::deque<Kept> history_;  // consecutive seqs ending at seq_, or empty
  size_t history_bytes_ = 0;
  uint64_t last_left_ns_ = 0;  // when the last subscriber went away
  std::list<Subscriber> subs_;
  dm_timer *heartbeat_ = nullptr;
  rapidjson::StringBuffer event_;  // one record's "id: S-N\ndata: {...}\n\n", reused
  std::string scratch_;
  dm_metric *m_clients_, *m_sent_, *m_dropped_, *m_refused_, *m_gaps_;
};

}  // namespace devmesh::query
