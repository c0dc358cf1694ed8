// What the engine tells about itself over HTTP: /health (outputs, degraded inputs, storage,
// stalled plugin calls) and /metrics (the registry, with the process gauges refreshed), and the
// metrics and build info each instance is registered with at load.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <bearer_token.hpp>

#include "engine.h"
#include "plugin_call.h"

namespace devmesh {

void Engine::register_metrics(Instance *i) {
  std::string labels = "instance=\"" + prom_escape(i->name) + "\",plugin=\"" +
                       prom_escape(i->desc.name) + "\",kind=\"" + kind_name(i->desc.kind) + "\"";
  i->m_in =
      metrics_.counter("devmesh_records_in_total", "Records received by the instance", labels);
  i->m_out = metrics_.counter("devmesh_records_out_total",
                              "Records passed on (filters) or delivered (outputs)", labels);
  i->m_dropped =
      metrics_.counter("devmesh_records_dropped_total", "Records dropped by a filter", labels);
  if (i->desc.kind == DM_FILTER) {
    const char *help = "Batches a filter failed on (they pass unchanged)";
    i->m_filter_failed =
        metrics_.counter("devmesh_filter_errors_total", help, labels + ",reason=\"failed\"");
    i->m_bad_verdicts =
        metrics_.counter("devmesh_filter_errors_total", help, labels + ",reason=\"bad_verdict\"");
  }
  if (auto *in = dynamic_cast<InputInstance *>(i)) {
    in->m_rejected =
        metrics_.counter("devmesh_input_rejected_total",
                         "Records refused at submit (backpressure or shutdown)", labels);
    in->m_unrouted = metrics_.counter("devmesh_records_unrouted_total",
                                      "Records that matched no output", labels);
    in->m_acked =
        metrics_.counter("devmesh_input_acks_total", "Tickets acknowledged to the input", labels);
    in->m_paused =
        metrics_.gauge("devmesh_input_paused", "1 while backpressure pauses the input", labels);
  }
  if (auto *o = dynamic_cast<OutputInstance *>(i)) {
    o->m_retried =
        metrics_.counter("devmesh_records_retried_total", "Record deliveries retried", labels);
    o->m_failed =
        metrics_.counter("devmesh_records_failed_total",
                         "Records that failed permanently and could not be dead-lettered", labels);
    o->m_dead = metrics_.counter("devmesh_records_dead_lettered_total",
                                 "Records written to the dead-letter file", labels);
    o->m_bytes = metrics_.counter("devmesh_bytes_out_total", "Bytes of records delivered", labels);
    o->m_qrecords =
        metrics_.gauge("devmesh_queue_records", "Records queued for the output", labels);
    o->m_qbytes = metrics_.gauge("devmesh_queue_bytes", "Bytes queued for the output", labels);
    o->m_merged = metrics_.counter(
        "devmesh_output_chunks_merged_total",
        "Queued chunks merged into the one dispatched before them while the output was behind",
        labels);
    o->m_backlog = metrics_.gauge("devmesh_storage_backlog_records",
                                  "Records waiting on disk for the output (storage)", labels);
    o->m_latency = metrics_.histogram("devmesh_flush_duration_seconds", "Flush latency", labels,
                                      {0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30});
  }
}

void Engine::build_info_json() {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("version");
  w.String(DEVMESH_VERSION);
  w.Key("abi");
  w.String((std::to_string(DM_ABI_MAJOR) + "." + std::to_string(DM_ABI_MINOR)).c_str());
  w.Key("instances");
  w.StartArray();
  auto add = [&](const Instance &i) {
    w.StartObject();
    w.Key("name");
    w.String(i.name.c_str());
    w.Key("plugin");
    w.String(i.desc.name);
    w.Key("kind");
    w.String(kind_name(i.desc.kind));
    w.Key("version");
    w.String(i.desc.version ? i.desc.version : "");
    w.Key("file");
    w.String(i.plugin->file.c_str());
    w.EndObject();
  };
  for (auto &i : inputs_) add(*i);
  for (auto &i : filters_) add(*i);
  for (auto &i : outputs_) add(*i);
  w.EndArray();
  w.EndObject();
  info_json_.assign(sb.GetString(), sb.GetSize());
}

static size_t rss_bytes() {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  return static_cast<size_t>(rss) * sysconf(_SC_PAGESIZE);
}

void Engine::serve_health(dm_http_request *req) {
  struct OutputHealth {
    const OutputInstance *output;
    std::string reason;  // empty: healthy
  };
  std::vector<OutputHealth> outputs;
  bool healthy = true;
  for (auto &o : outputs_) {
    std::string reason;
    if (!o->queue.last_error().empty()) reason = o->queue.last_error();
    char buf[512] = {0};
    if (reason.empty() && o->desc.health && o->created) {
      PluginCall call(o->name.c_str(), "health");
      if (o->desc.health(o->state, buf, sizeof buf) != 0) reason = buf[0] ? buf : "unhealthy";
    }
    if (!reason.empty()) healthy = false;
    outputs.push_back(OutputHealth{o.get(), std::move(reason)});
  }
  // Full storage refuses input: the instance is not healthy until it drains.
  if (storage_ && storage_full_) healthy = false;
  // A plugin call over its bound. One on the loop is only seen here after it returned (this
  // runs on the loop): the watchdog's log line is what shows it live.
  const std::string stalled = watchdog_ ? watchdog_->stalled_json() : "";
  if (!stalled.empty()) healthy = false;
  // An input that cannot produce (a journal with no files it may read) is "degraded": the
  // process works and delivers what others produce, and a restart would not help, so the
  // status stays 200 (as Vector's /health for a running process); "unhealthy" is 503.
  std::vector<std::pair<const InputInstance *, std::string>> degraded;
  for (auto &i : inputs_) {
    char buf[512] = {0};
    if (!i->desc.health || !i->created) continue;
    PluginCall call(i->name.c_str(), "health");
    if (i->desc.health(i->state, buf, sizeof buf) != 0)
      degraded.emplace_back(i.get(), buf[0] ? buf : "degraded");
  }

  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("status");
  w.String(!healthy ? "unhealthy" : degraded.empty() ? "ok" : "degraded");
  w.Key("uptime_seconds");
  w.Uint64((monotonic_ns() - start_ns_) / 1000000000ull);
  w.Key("outputs");
  w.StartArray();
  for (const OutputHealth &h : outputs) {
    w.StartObject();
    w.Key("instance");
    w.String(h.output->name.data(), static_cast<rapidjson::SizeType>(h.output->name.size()));
    w.Key("healthy");
    w.Bool(h.reason.empty());
    w.Key("queued_records");
    w.Uint64(h.output->queue.queued_records());
    if (!h.reason.empty()) {
      w.Key("reason");
      w.String(h.reason.data(), static_cast<rapidjson::SizeType>(h.reason.size()));
    }
    w.EndObject();
  }
  w.EndArray();
  if (!degraded.empty()) {
    w.Key("inputs");
    w.StartArray();
    for (const auto &[input, reason] : degraded) {
      w.StartObject();
      w.Key("instance");
      w.String(input->name.data(), static_cast<rapidjson::SizeType>(input->name.size()));
      w.Key("degraded");
      w.Bool(true);
      w.Key("reason");
      w.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
      w.EndObject();
    }
    w.EndArray();
  }
  if (storage_) {
    const std::string reason = !storage_error_.empty() ? storage_error_
                               : storage_over_max_     ? "max_size reached"
                                                       : "";
    w.Key("storage");
    w.StartObject();
    w.Key("full");
    w.Bool(storage_full_);
    if (!reason.empty()) {
      w.Key("reason");
      w.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
    }
    w.Key("bytes");
    w.Uint64(storage_->total_bytes());
    w.Key("segments");
    w.Uint64(storage_->segment_count());
    w.EndObject();
  }
  if (!last_reload_json_.empty()) {
    // The last reload's outcome (a refused one lists its problems; the pipeline runs on).
    w.Key("last_reload");
    w.RawValue(last_reload_json_.data(), last_reload_json_.size(), rapidjson::kObjectType);
  }
  if (!stalled.empty()) {
    // The watchdog keeps it as a JSON object already.
    w.Key("stalled");
    w.RawValue(stalled.data(), stalled.size(), rapidjson::kObjectType);
  }
  w.EndObject();
  HttpServer::reply(req, healthy ? 200 : 503, "application/json", sb.GetString(), sb.GetSize());
}

bool Engine::authorized(dm_http_request *req) {
  // cfg_ is the running configuration: a reload that changes the token applies it here.
  const std::string &token = cfg_.service.http_token;
  if (token.empty()) return true;
  const dm_str h = HttpServer::header(req, "Authorization");
  if (bearer_token_matches(std::string_view(h.ptr, h.len), token)) return true;
  m_unauthorized_->add(1);
  HttpServer::add_header(req, "WWW-Authenticate", "Bearer");
  static const std::string body =
      "{\"error\":\"missing or wrong bearer token (service.http_token)\"}";
  HttpServer::reply(req, 401, "application/json", body.data(), body.size());
  return false;
}

void Engine::serve_metrics(dm_http_request *req) {
  m_rss_->set(static_cast<double>(rss_bytes()));
  m_uptime_->set((monotonic_ns() - start_ns_) / 1e9);
  m_framing_refused_->set(static_cast<double>(HttpServer::framing_refusals()));
  std::string body = metrics_.render();
  HttpServer::reply(req, 200, "text/plain; version=0.0.4", body.data(), body.size());
}

}  // namespace devmesh
