// GET /tail: Server-Sent Events of the records passing through the pipeline, filtered per
// subscriber (store-independent; runs on the loop thread only).
#pragma once

#include <devmesh/plugin.h>

#include <cstddef>
#include <cstdint>

#include "query_json.h"
#include "query_params.h"

namespace devmesh::query {

class Tail {
 public:
  Tail(const dm_host_api *host, dm_instance *inst, uint32_t max_clients, size_t buffer_bytes,
       TimeFormat tf);
  ~Tail();
  // Takes over req: starts the event stream, or answers an error.
  void subscribe(dm_http_request *req, TailFilter filter);
  // Sends each matching record of the batch to each subscriber.
  void publish(const dm_batch &batch);
  // Ends every stream (plugin stop).
  void close_all();

 private:
  const dm_host_api *host_;
};

}  // namespace devmesh::query
