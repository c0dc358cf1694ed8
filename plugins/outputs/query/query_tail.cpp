// GET /tail: SSE fan-out of the pipeline's records to filtered subscribers, over the host's
// streaming responses (http_stream_*), with a heartbeat so idle streams stay open through proxies.
#include "query_tail.h"

#include <devmesh/record_fields.hpp>
#include <meta_json.hpp>
#include <pattern_meta.hpp>

#include <cstddef>
#include <cstdio>
#include <string_view>

namespace devmesh::query {
namespace {

constexpr uint64_t kHeartbeatMs = 15000;
// How long records are still kept after the last subscriber left: a browser reconnects within
// seconds (retry: 2000 below); a client away longer is told of the gap.
constexpr uint64_t kKeepAfterLastNs = uint64_t{60} * 1000 * 1000000;
constexpr std::string_view kHello = "retry: 2000\n: devmesh tail\n\n";
constexpr std::string_view kPing = ": keepalive\n\n";

std::string_view view(dm_str s) {
  return s.len ? std::string_view(s.ptr, s.len) : std::string_view();
}

}  // namespace

Tail::Tail(const dm_host_api *host, dm_instance *inst, uint32_t max_clients, size_t buffer_bytes,
           size_t history_bytes, TimeFormat tf)
    : host_(host),
      inst_(inst),
      max_clients_(max_clients),
      buffer_bytes_(buffer_bytes),
      history_limit_(max_clients ? history_bytes : 0),
      tf_(tf),
      stream_(host->now_ns() / 1000) {
  m_clients_ = host->metric_gauge(inst, "query_tail_clients", "open /tail streams", nullptr);
  m_sent_ = host->metric_counter(inst, "query_tail_records_sent_total",
                                 "records sent to /tail subscribers", nullptr);
  m_dropped_ = host->metric_counter(inst, "query_tail_records_dropped_total",
                                    "records a slow /tail subscriber did not get", nullptr);
  m_refused_ = host->metric_counter(inst, "query_tail_refused_total",
                                    "/tail requests refused (tail_clients reached)", nullptr);
  m_gaps_ = host->metric_counter(inst, "query_tail_gaps_total",
                                 "/tail resumes whose Last-Event-ID was older than the records "
                                 "kept (told to the client as an 'event: gap')",
                                 nullptr);
}

Tail::~Tail() {
  if (heartbeat_) host_->timer_free(heartbeat_);
  // The engine closes every stream (on_close) before it stops plugins; anything left here would
  // be called back after we are gone, so it is only reported.
  if (!subs_.empty())
    host_->log(inst_, DM_LOG_WARN, "%zu /tail streams still open at destroy", subs_.size());
}

bool Tail::available() const {
  // Entries appended to the host table in a later minor: an older host has no streaming.
  return host_->struct_size >= offsetof(dm_host_api, http_stream_end) + sizeof(void *) &&
         host_->http_stream_start && host_->http_stream_write && host_->http_stream_end;
}

void Tail::subscribe(dm_http_request *req, TailFilter filter) {
  auto refuse = [&](int status, const char *msg) {
    const std::string body = error_json(msg);
    host_->http_reply(req, status, "application/json", body.data(), body.size());
  };
  if (!available()) return refuse(501, "/tail needs streaming responses, not in this engine");
  if (subs_.size() >= max_clients_) {
    host_->metric_add(m_refused_, 1);
    host_->http_add_header(req, "Retry-After", "5");
    return refuse(503, "too many /tail subscribers (tail_clients)");
  }
  subs_.push_back(Subscriber{this, req, std::move(filter)});
  Subscriber &s = subs_.back();
  host_->http_add_header(req, "Cache-Control", "no-store");
  host_->http_add_header(req, "X-Accel-Buffering", "no");
  if (host_->http_stream_start(req, 200, "text/event-stream", buffer_bytes_, on_close, &s) !=
      DM_OK) {
    subs_.pop_back();  // the host finished the request; on_close never comes
    return;
  }
  host_->metric_set(m_clients_, static_cast<double>(subs_.size()));
  write(s, kHello.data(), kHello.size());
  if (s.filter.resume_after) replay(s, *s.filter.resume_after);
  if (!heartbeat_) {
    heartbeat_ = host_->timer_new(inst_, on_heartbeat, this);
    if (heartbeat_) host_->timer_start(heartbeat_, kHeartbeatMs, kHeartbeatMs);
  }
}

void Tail::on_close(void *arg) {
  auto *s = static_cast<Subscriber *>(arg);
  Tail *t = s->tail;
  for (auto it = t->subs_.begin(); it != t->subs_.end(); ++it)
    if (&*it == s) {
      t->subs_.erase(it);
      break;
    }
  if (t->subs_.empty()) t->last_left_ns_ = t->host_->now_ns();
  t->host_->metric_set(t->m_clients_, static_cast<double>(t->subs_.size()));
}

void Tail::on_heartbeat(void *arg) {
  auto *t = static_cast<Tail *>(arg);
  for (Subscriber &s : t->subs_) t->write(s, kPing.data(), kPing.size());
}

int Tail::write(Subscriber &s, const char *data, size_t len) {
  if (!s.open) return DM_ERR;
  if (s.dropped) {
    char note[80];
    int n = std::snprintf(note, sizeof note, ": dropped %llu records (too slow)\n\n",
                          static_cast<unsigned long long>(s.dropped));
    if (host_->http_stream_write(s.req, note, static_cast<size_t>(n)) == DM_OK) s.dropped = 0;
  }
  const int rc = host_->http_stream_write(s.req, data, len);
  if (rc == DM_ERR_FULL) ++s.dropped;
  if (rc == DM_ERR) s.open = false;  // gone: on_close follows from the loop
  return rc;
}

bool Tail::wants(const TailFilter &f, int level, std::string_view service, std::string_view host,
                 std::string_view message) {
  return (f.service.empty() || service == f.service) && (f.host.empty() || host == f.host) &&
         (!f.level || level == f.level) && (!f.min_rank || dm_level_rank(level) >= f.min_rank) &&
         message_matches(message, f.q_terms);
}

bool Tail::keeping(uint64_t now_ns) const {
  return history_limit_ && (!subs_.empty() || now_ns - last_left_ns_ < kKeepAfterLastNs);
}

void Tail::keep(const dm_record &r) {
  Kept k{seq_,
         r.level,
         std::string(view(r.service)),
         std::string(view(r.host)),
         std::string(view(r.message)),
         std::string(event_.GetString(), event_.GetSize())};
  history_bytes_ += k.service.size() + k.host.size() + k.message.size() + k.event.size();
  history_.push_back(std::move(k));
  while (history_bytes_ > history_limit_ && !history_.empty()) {
    const Kept &old = history_.front();
    history_bytes_ -= old.service.size() + old.host.size() + old.message.size() + old.event.size();
    history_.pop_front();
  }
}

void Tail::replay(Subscriber &s, const EventId &after) {
  const uint64_t oldest = history_.empty() ? seq_ + 1 : history_.front().seq;
  const bool ours = after.stream == stream_ && after.seq <= seq_;
  if (!ours || after.seq + 1 < oldest) {
    // Not silently: the client learns that records are missing, and how many when known (the
    // count is of every record that passed; some may not have matched its filter).
    rapidjson::StringBuffer gap;
    rapidjson::Writer<rapidjson::StringBuffer> w(gap);
    w.StartObject();
    w.Key("last_event_id");
    const std::string id = format_event_id(after);
    w.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
    w.Key("missed");
    if (ours)
      w.Uint64(oldest - after.seq - 1);
    else
      w.Null();
    w.Key("reason");
    w.String(ours ? "older than the records /tail keeps (tail_history)"
                  : "not an id of this stream (the server restarted or reloaded since)");
    w.EndObject();
    const std::string event =
        "event: gap\ndata: " + std::string(gap.GetString(), gap.GetSize()) + "\n\n";
    host_->metric_add(m_gaps_, 1);
    write(s, event.data(), event.size());
  }
  const uint64_t from = ours ? after.seq + 1 : 0;
  uint64_t sent = 0, dropped = 0;
  for (const Kept &k : history_) {
    if (k.seq < from || !wants(s.filter, k.level, k.service, k.host, k.message)) continue;
    const int rc = write(s, k.event.data(), k.event.size());
    if (rc == DM_OK) ++sent;
    if (rc == DM_ERR_FULL) ++dropped;
    if (rc == DM_ERR) break;
  }
  if (sent) host_->metric_add(m_sent_, static_cast<double>(sent));
  if (dropped) host_->metric_add(m_dropped_, static_cast<double>(dropped));
}

void Tail::render(const dm_record &r, uint64_t seq) {
  event_.Clear();
  const std::string head = "id: " + format_event_id({stream_, seq}) + "\ndata: ";
  for (char c : head) event_.Put(c);
  rapidjson::Writer<rapidjson::StringBuffer> w(event_);
  w.StartObject();
  w.Key("timestamp");
  char ts[64];
  w.String(ts, static_cast<rapidjson::SizeType>(format_time(r.timestamp_ns, tf_, ts, sizeof ts)));
  // As /query/logs rows: level before the optional fields, which are null when empty.
  for (size_t f = 0; f < kRecordFieldCount; ++f) {
    if (f == kLevelBefore) {
      w.Key("level");
      w.String(dm_level_name(r.level));
    }
    const RecordField &field = kRecordFields[f];
    const dm_str v = r.*field.member;
    w.Key(field.name.data(), static_cast<rapidjson::SizeType>(field.name.size()));
    if (field.optional && !v.len)
      w.Null();
    else
      write_string(w, view(v), scratch_);
  }
  // As the stores keep it: the patterns filter's keys are a column and a table row, not meta.
  const PatternMeta pm = pattern_meta(r);
  w.Key("meta_json");
  if (r.meta_count == pm.keys) {
    w.Null();
  } else {
    w.StartObject();
    for (uint32_t i = 0; i < r.meta_count; ++i) {
      if (pm.taken(i)) continue;
      std::string_view k = view(r.meta[i].key);
      w.Key(k.data() ? k.data() : "", static_cast<rapidjson::SizeType>(k.size()));
      if (!write_typed_meta(w, r.meta[i])) write_string(w, view(r.meta[i].value), scratch_);
    }
    w.EndObject();
  }
  w.Key("pattern_id");
  if (pm.valid)
    write_string(w, view(r.meta[pm.id_index].value), scratch_);
  else
    w.Null();
  w.EndObject();
  event_.Put('\n');
  event_.Put('\n');
}

void Tail::publish(const dm_batch &batch) {
  const bool keep_now = keeping(host_->now_ns());
  if (!keep_now && !history_.empty()) {
    // Nobody came back in time: what is kept would no longer end at the newest record.
    history_.clear();
    history_bytes_ = 0;
  }
  if (subs_.empty() && !keep_now) {
    seq_ += batch.count;
    return;
  }
  uint64_t sent = 0, dropped = 0;
  for (uint32_t i = 0; i < batch.count; ++i) {
    const dm_record &r = batch.records[i];
    ++seq_;
    bool rendered = false;
    for (Subscriber &s : subs_) {
      if (!s.open || !wants(s.filter, r.level, view(r.service), view(r.host), view(r.message)))
        continue;
      if (!rendered) render(r, seq_), rendered = true;
      const int rc = write(s, event_.GetString(), event_.GetSize());
      if (rc == DM_OK) ++sent;
      if (rc == DM_ERR_FULL) ++dropped;
    }
    if (keep_now) {
      if (!rendered) render(r, seq_);
      keep(r);
    }
  }
  if (sent) host_->metric_add(m_sent_, static_cast<double>(sent));
  if (dropped) host_->metric_add(m_dropped_, static_cast<double>(dropped));
}

void Tail::close_all() {
  for (Subscriber &s : subs_)
    if (s.open) {
      s.open = false;
      host_->http_stream_end(s.req);
    }
  if (heartbeat_) host_->timer_stop(heartbeat_);
}

}  // namespace devmesh::query
