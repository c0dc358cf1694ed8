// GET /tail. Waits for streaming responses in the host API (http_stream_*): until then it
// answers 501 and publish() does nothing.
#include "query_tail.h"

namespace devmesh::query {

Tail::Tail(const dm_host_api *host, dm_instance *, uint32_t, size_t, TimeFormat) : host_(host) {}
Tail::~Tail() = default;

void Tail::subscribe(dm_http_request *req, TailFilter) {
  const std::string body = error_json("/tail needs streaming responses, not in this engine yet");
  host_->http_reply(req, 501, "application/json", body.data(), body.size());
}

void Tail::publish(const dm_batch &) {}
void Tail::close_all() {}

}  // namespace devmesh::query
