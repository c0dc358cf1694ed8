// The dm_host_api table: every service a plugin gets, forwarding to the engine. Loop handles
// handed to plugins are wrapped so that the engine owns them and frees them in close callbacks.
// Entries plugin.h marks [loop] begin with LOOP_ONLY: with DEVMESH_THREAD_CHECKS a call from
// another thread aborts naming the entry (it would race the loop: a crash far from the cause).
#include <xxhash.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "engine.h"
#include "log.h"
#include "plugin_call.h"

// `who`: the owning instance's name, for the crash report and the watchdog.
struct dm_timer {
  uv_timer_t h;
  dm_timer_cb cb;
  void *arg;
  const char *who;
};
struct dm_watch {
  uv_poll_t h;
  dm_watch_cb cb;
  void *arg;
  const char *who;
};
struct dm_async {
  uv_async_t h;
  dm_async_cb cb;
  void *arg;
  const char *who;
};

namespace devmesh {
namespace {

Engine *engine_of(dm_instance *i) {
  return Instance::from(i)->engine;
}

// `who`: the calling instance's name when the entry knows it, else null.
[[noreturn, maybe_unused]] __attribute__((cold, noinline)) void off_loop(const char *entry,
                                                                         const char *who) {
  fprintf(stderr, "devmesh: %s called off the loop thread (plugin %s): plugin.h marks it [loop]\n",
          entry, who ? who : "unknown");
  fflush(stderr);
  abort();
}
[[maybe_unused]] const char *name_of(dm_instance *inst) {
  return inst ? Instance::from(inst)->name.c_str() : nullptr;
}

#if DEVMESH_THREAD_CHECKS
// One thread-local load per call. `who` is evaluated only on the failing path.
#define LOOP_ONLY(entry, who)           \
  do {                                  \
    if (!on_loop_thread()) [[unlikely]] \
      off_loop(entry, who);             \
  } while (0)
#else
#define LOOP_ONLY(entry, who) \
  do {                        \
  } while (0)
#endif

template <class T>
void close_and_delete(T *wrapper) {
  uv_close(reinterpret_cast<uv_handle_t *>(&wrapper->h),
           [](uv_handle_t *h) { delete static_cast<T *>(h->data); });
}

void host_log(dm_instance *inst, dm_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, inst ? Instance::from(inst)->name.c_str() : "plugin", fmt, ap);
  va_end(ap);
}

const OptionValue *value(const dm_config *cfg, const char *key) {
  if (!cfg || !key) return nullptr;
  auto it = cfg->values.find(key);
  return it == cfg->values.end() ? nullptr : &it->second;
}

int config_has(const dm_config *cfg, const char *key) {
  return value(cfg, key) != nullptr;
}
dm_str config_string(const dm_config *cfg, const char *key) {
  const OptionValue *v = value(cfg, key);
  return v ? dm_str{v->text.c_str(), v->text.size()} : dm_str{"", 0};
}
int64_t config_int(const dm_config *cfg, const char *key) {
  const OptionValue *v = value(cfg, key);
  return v ? v->integer : 0;
}
double config_double(const dm_config *cfg, const char *key) {
  const OptionValue *v = value(cfg, key);
  return v ? v->number : 0;
}
int config_bool(const dm_config *cfg, const char *key) {
  const OptionValue *v = value(cfg, key);
  return v ? v->integer != 0 : 0;
}
uint32_t config_count(const dm_config *cfg, const char *key) {
  const OptionValue *v = value(cfg, key);
  if (!v) return 0;
  return static_cast<uint32_t>(v->type == DM_OPT_MAP ? v->entries.size() : v->items.size());
}
dm_str config_item(const dm_config *cfg, const char *key, uint32_t i) {
  const OptionValue *v = value(cfg, key);
  if (!v) return dm_str{"", 0};
  if (v->type == DM_OPT_MAP) {
    if (i >= v->entries.size()) return dm_str{"", 0};
    return dm_str{v->entries[i].second.c_str(), v->entries[i].second.size()};
  }
  if (i >= v->items.size()) return dm_str{"", 0};
  return dm_str{v->items[i].c_str(), v->items[i].size()};
}
dm_str config_map_key(const dm_config *cfg, const char *key, uint32_t i) {
  const OptionValue *v = value(cfg, key);
  if (!v || i >= v->entries.size()) return dm_str{"", 0};
  return dm_str{v->entries[i].first.c_str(), v->entries[i].first.size()};
}

// Collected with the option's place in the file; Engine::load reports them after create().
// After create() (nothing will collect them) they are logged.
void config_error(dm_instance *inst, const char *key, const char *fmt, ...) {
  LOOP_ONLY("config_error", name_of(inst));
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
  va_end(ap);
  Instance *i = inst ? Instance::from(inst) : nullptr;
  if (!i || !i->cfg || i->created) {
    host_log(inst, DM_LOG_ERROR, "%s%s%s", key ? key : "", key ? ": " : "", msg);
    return;
  }
  i->cfg->problems.push_back(plugin_problem(*i->cfg, key, msg));
}

int config_bind(const dm_config *cfg, void *dst) {
  if (!cfg || !dst) return DM_ERR_INVALID;
  bind_config(*cfg, dst);
  return DM_OK;
}

dm_batch *batch_new_api(dm_instance *, uint32_t hint) {
  return &batch_new(hint)->pub;
}
dm_record *batch_add(dm_batch *b) {
  return Batch::from(b)->add();
}
dm_str arena_copy(dm_batch *b, const void *data, size_t len) {
  return Batch::from(b)->arena.copy(data, len);
}
void *arena_alloc(dm_batch *b, size_t len) {
  return Batch::from(b)->arena.alloc(len);
}
int meta_set_api(dm_batch *b, dm_record *rec, dm_str key, dm_str v, uint32_t type) {
  // Strings need no check: the common case (every journald field) stays one call.
  if (type != DM_META_STRING && !meta_value_valid(v, type)) return DM_ERR_INVALID;
  return meta_set(Batch::from(b), rec, key, v, type);
}
void batch_free(dm_batch *b) {
  Batch *batch = Batch::from(b);
  // Holds attached to a batch that is never emitted stand in for nothing any more.
  for (dm_hold *h : batch->holds) h->engine->release_hold(h, nullptr);
  batch->holds.clear();
  batch_unref(batch);
}

// [any]: from the input's own threads through its inbox (same ticket order, backpressure and
// acks); the loop's own submits go straight in, without a lock.
int submit(dm_instance *inst, dm_batch *b, uint64_t *ticket) {
  auto *in = dynamic_cast<InputInstance *>(Instance::from(inst));
  if (!in || !b) return DM_ERR_INVALID;
  if (!on_loop_thread()) return in->inbox.submit(Batch::from(b), ticket);
  return engine_of(inst)->submit(in, Batch::from(b), ticket);
}
int emit(dm_instance *inst, dm_batch *b) {
  LOOP_ONLY("emit", name_of(inst));
  auto *f = dynamic_cast<FilterInstance *>(Instance::from(inst));
  if (!f || !b) return DM_ERR_INVALID;
  return engine_of(inst)->emit(f, Batch::from(b));
}
dm_hold *hold(dm_instance *inst, dm_batch *b) {
  LOOP_ONLY("hold", name_of(inst));
  if (!inst || !b || !dynamic_cast<FilterInstance *>(Instance::from(inst))) return nullptr;
  return engine_of(inst)->hold(Batch::from(b));
}
void hold_attach(dm_batch *b, dm_hold *h) {
  LOOP_ONLY("hold_attach", nullptr);
  if (b && h) Batch::from(b)->holds.push_back(h);
}
void hold_release(dm_hold *h) {
  LOOP_ONLY("hold_release", nullptr);
  if (h) h->engine->release_hold(h, nullptr);
}
void flush_done(dm_flush_token *token, dm_flush_status status, uint32_t retry_after_ms,
                const char *reason) {
  auto *c = reinterpret_cast<Chunk *>(token);
  c->out->engine->complete(Completion{c, status, retry_after_ms, reason ? reason : ""});
}

// Since 1.2. The mark travels with the chunk; the completion (flush's return or flush_done,
// which takes cq_mu_) orders it before the loop reads the marks.
void flush_record_status(dm_flush_token *token, uint32_t index, dm_flush_status status,
                         const char *reason) {
  auto *c = reinterpret_cast<Chunk *>(token);
  std::lock_guard<std::mutex> lk(c->marks_mu);
  c->marks.push_back(RecordMark{index, status, reason ? reason : ""});
}

dm_timer *timer_new(dm_instance *inst, dm_timer_cb cb, void *arg) {
  LOOP_ONLY("timer_new", name_of(inst));
  auto *t = new dm_timer{{}, cb, arg, Instance::from(inst)->who};
  uv_timer_init(engine_of(inst)->loop(), &t->h);
  t->h.data = t;
  return t;
}
void timer_start(dm_timer *t, uint64_t timeout_ms, uint64_t repeat_ms) {
  LOOP_ONLY("timer_start", t ? t->who : nullptr);
  uv_timer_start(
      &t->h,
      [](uv_timer_t *h) {
        auto *w = static_cast<dm_timer *>(h->data);
        PluginCall call(w->who, "timer");
        w->cb(w->arg);
      },
      timeout_ms, repeat_ms);
}
void timer_stop(dm_timer *t) {
  LOOP_ONLY("timer_stop", t ? t->who : nullptr);
  uv_timer_stop(&t->h);
}
void timer_free(dm_timer *t) {
  LOOP_ONLY("timer_free", t ? t->who : nullptr);
  if (!t) return;
  uv_timer_stop(&t->h);
  close_and_delete(t);
}

dm_watch *watch_new(dm_instance *inst, int fd, dm_watch_cb cb, void *arg) {
  LOOP_ONLY("watch_new", name_of(inst));
  auto *w = new dm_watch{{}, cb, arg, Instance::from(inst)->who};
  if (uv_poll_init(engine_of(inst)->loop(), &w->h, fd) != 0) {
    delete w;
    return nullptr;
  }
  w->h.data = w;
  return w;
}
int watch_set(dm_watch *w, int events) {
  LOOP_ONLY("watch_set", w ? w->who : nullptr);
  if (events == 0) return uv_poll_stop(&w->h) == 0 ? DM_OK : DM_ERR;
  int ev = ((events & DM_READABLE) ? UV_READABLE : 0) | ((events & DM_WRITABLE) ? UV_WRITABLE : 0);
  int rc = uv_poll_start(&w->h, ev, [](uv_poll_t *h, int status, int uv_events) {
    auto *ww = static_cast<dm_watch *>(h->data);
    int e = ((uv_events & UV_READABLE) ? DM_READABLE : 0) |
            ((uv_events & UV_WRITABLE) ? DM_WRITABLE : 0);
    if (status < 0) e = DM_READABLE | DM_WRITABLE;  // let the plugin see the error on its fd
    PluginCall call(ww->who, "watch");
    ww->cb(ww->arg, e);
  });
  return rc == 0 ? DM_OK : DM_ERR;
}
void watch_free(dm_watch *w) {
  LOOP_ONLY("watch_free", w ? w->who : nullptr);
  if (!w) return;
  uv_poll_stop(&w->h);
  close_and_delete(w);
}

dm_async *async_new(dm_instance *inst, dm_async_cb cb, void *arg) {
  LOOP_ONLY("async_new", name_of(inst));
  auto *a = new dm_async{{}, cb, arg, Instance::from(inst)->who};
  uv_async_init(engine_of(inst)->loop(), &a->h, [](uv_async_t *h) {
    auto *aa = static_cast<dm_async *>(h->data);
    PluginCall call(aa->who, "async");
    aa->cb(aa->arg);
  });
  a->h.data = a;
  return a;
}
void async_send(dm_async *a) {
  uv_async_send(&a->h);
}
void async_free(dm_async *a) {
  LOOP_ONLY("async_free", a ? a->who : nullptr);
  if (a) close_and_delete(a);
}

struct Work {
  uv_work_t req;
  dm_work_cb work, done;
  void *arg;
  const char *who;
};
int queue_work(dm_instance *inst, dm_work_cb work, dm_work_cb done, void *arg) {
  LOOP_ONLY("queue_work", name_of(inst));
  auto *w = new Work{{}, work, done, arg, Instance::from(inst)->who};
  w->req.data = w;
  int rc = uv_queue_work(
      engine_of(inst)->loop(), &w->req,
      [](uv_work_t *r) {
        auto *ww = static_cast<Work *>(r->data);
        // libuv's pool threads live as long as the process: one alternate signal stack each,
        // so a stack overflow in plugin work is reported too. Not watched (no bound).
        static thread_local WatchedThread pool_thread("pool", 0);
        PluginCall call(ww->who, "work");
        if (ww->work) ww->work(ww->arg);
      },
      [](uv_work_t *r, int) {
        auto *ww = static_cast<Work *>(r->data);
        if (ww->done) {
          PluginCall call(ww->who, "work_done");
          ww->done(ww->arg);
        }
        delete ww;
      });
  if (rc != 0) {
    delete w;
    return DM_ERR;
  }
  return DM_OK;
}

int http_tls(dm_instance *inst, const char *listen, const dm_tls_config *tls) {
  LOOP_ONLY("http_tls", name_of(inst));
  if (!listen || !tls) return DM_ERR_INVALID;
  auto text = [](const char *s) { return std::string(s ? s : ""); };
  HttpServer::Tls t{text(tls->cert), text(tls->key), text(tls->ca), text(tls->min_version)};
  Instance *i = Instance::from(inst);
  std::string err;
  if (!i->engine->http().set_tls(listen, t, err, i, i->name)) {
    log_msg(DM_LOG_ERROR, i->name.c_str(), "%s", err.c_str());  // names the address
    return DM_ERR;
  }
  return DM_OK;
}

int http_route(dm_instance *inst, const char *listen, const char *method, const char *path,
               dm_http_handler handler, void *arg) {
  LOOP_ONLY("http_route", name_of(inst));
  if (!listen || !method || !path || !handler) return DM_ERR_INVALID;
  std::string err;
  Instance *i = Instance::from(inst);
  const char *who = i->who;
  if (!i->engine->http().add_route(
          listen, method, path,
          [handler, arg, who](dm_http_request *r) {
            PluginCall call(who, "http_handler");
            handler(arg, r);
          },
          err, i)) {
    log_msg(DM_LOG_ERROR, i->name.c_str(), "cannot serve %s %s on %s: %s", method, path, listen,
            err.c_str());
    return DM_ERR;
  }
  return DM_OK;
}

dm_metric *metric_make(dm_instance *inst, const char *name, const char *help, const char *labels,
                       bool counter) {
  Instance *i = Instance::from(inst);
  std::string l =
      "instance=\"" + prom_escape(i->name) + "\",plugin=\"" + prom_escape(i->desc.name) + "\"";
  if (labels && *labels) l += std::string(",") + labels;
  std::string n = name;
  if (n.rfind("devmesh_", 0) != 0) n = "devmesh_" + n;
  MetricsRegistry &reg = i->engine->metrics();
  Metric *m = counter ? reg.counter(n, help ? help : "", l) : reg.gauge(n, help ? help : "", l);
  return reinterpret_cast<dm_metric *>(m);
}
dm_metric *metric_counter(dm_instance *inst, const char *name, const char *help,
                          const char *labels) {
  LOOP_ONLY("metric_counter", name_of(inst));
  return metric_make(inst, name, help, labels, true);
}
dm_metric *metric_gauge(dm_instance *inst, const char *name, const char *help, const char *labels) {
  LOOP_ONLY("metric_gauge", name_of(inst));
  return metric_make(inst, name, help, labels, false);
}
void metric_add(dm_metric *m, double d) {
  if (m) reinterpret_cast<Metric *>(m)->add(d);
}
void metric_set(dm_metric *m, double v) {
  if (m) reinterpret_cast<Metric *>(m)->set(v);
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}
void hash128(const void *data, size_t len, uint8_t out[16]) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
  memcpy(out, c.digest, 16);
}
const char *instance_name(dm_instance *inst) {
  return Instance::from(inst)->name.c_str();
}
void input_finished(dm_instance *inst) {
  LOOP_ONLY("input_finished", name_of(inst));
  if (auto *in = dynamic_cast<InputInstance *>(Instance::from(inst)))
    in->engine->input_finished(in);
}

int parse_duration_api(dm_str text, int64_t *ms) {
  int64_t v;
  if (!ms || !parse_duration_ms(std::string_view(text.ptr ? text.ptr : "", text.len), v))
    return DM_ERR_INVALID;
  *ms = v;
  return DM_OK;
}
int parse_size_api(dm_str text, int64_t *bytes) {
  int64_t v;
  if (!bytes || !parse_size(std::string_view(text.ptr ? text.ptr : "", text.len), v))
    return DM_ERR_INVALID;
  *bytes = v;
  return DM_OK;
}

dm_str engine_info(dm_instance *inst) {
  const std::string &j = Instance::from(inst)->engine->info_json();
  return dm_str{j.c_str(), j.size()};
}

int storage_enabled(dm_instance *inst) {
  return Instance::from(inst)->engine->config().service.storage_path.empty() ? 0 : 1;
}

// The HTTP entries, checked here: the server calls its own functions directly.
dm_str http_method(dm_http_request *r) {
  LOOP_ONLY("http_method", nullptr);
  return HttpServer::method(r);
}
dm_str http_path(dm_http_request *r) {
  LOOP_ONLY("http_path", nullptr);
  return HttpServer::path(r);
}
dm_str http_query(dm_http_request *r) {
  LOOP_ONLY("http_query", nullptr);
  return HttpServer::query(r);
}
dm_str http_header(dm_http_request *r, const char *name) {
  LOOP_ONLY("http_header", nullptr);
  return HttpServer::header(r, name);
}
dm_str http_body(dm_http_request *r) {
  LOOP_ONLY("http_body", nullptr);
  return HttpServer::body(r);
}
void http_add_header(dm_http_request *r, const char *name, const char *value) {
  LOOP_ONLY("http_add_header", nullptr);
  HttpServer::add_header(r, name, value);
}
void http_reply(dm_http_request *r, int status, const char *type, const char *body, size_t len) {
  LOOP_ONLY("http_reply", nullptr);
  HttpServer::reply(r, status, type, body, len);
}
int http_stream_start(dm_http_request *r, int status, const char *type, size_t max_buffered,
                      void (*on_close)(void *), void *arg) {
  LOOP_ONLY("http_stream_start", nullptr);
  return HttpServer::stream_start(r, status, type, max_buffered, on_close, arg);
}
int http_stream_write(dm_http_request *r, const void *data, size_t len) {
  LOOP_ONLY("http_stream_write", nullptr);
  return HttpServer::stream_write(r, data, len);
}
void http_stream_end(dm_http_request *r) {
  LOOP_ONLY("http_stream_end", nullptr);
  HttpServer::stream_end(r);
}

// Initialised by field name (in declaration order, as C++20 requires): an entry in the wrong
// place does not compile.
const dm_host_api kHostApi = {
    .struct_size = sizeof(dm_host_api),
    .abi_major = DM_ABI_MAJOR,
    .abi_minor = DM_ABI_MINOR,
    .log = host_log,
    .config_has = config_has,
    .config_string = config_string,
    .config_int = config_int,
    .config_double = config_double,
    .config_bool = config_bool,
    .config_count = config_count,
    .config_item = config_item,
    .config_map_key = config_map_key,
    .batch_new = batch_new_api,
    .batch_add = batch_add,
    .arena_copy = arena_copy,
    .arena_alloc = arena_alloc,
    .meta_set = meta_set_api,
    .batch_free = batch_free,
    .submit = submit,
    .emit = emit,
    .flush_done = flush_done,
    .timer_new = timer_new,
    .timer_start = timer_start,
    .timer_stop = timer_stop,
    .timer_free = timer_free,
    .watch_new = watch_new,
    .watch_set = watch_set,
    .watch_free = watch_free,
    .async_new = async_new,
    .async_send = async_send,
    .async_free = async_free,
    .queue_work = queue_work,
    .http_route = http_route,
    .http_method = http_method,
    .http_path = http_path,
    .http_query = http_query,
    .http_header = http_header,
    .http_body = http_body,
    .http_add_header = http_add_header,
    .http_reply = http_reply,
    .metric_counter = metric_counter,
    .metric_gauge = metric_gauge,
    .metric_add = metric_add,
    .metric_set = metric_set,
    .now_ns = now_ns,
    .hash128 = hash128,
    .instance_name = instance_name,
    .input_finished = input_finished,
    .parse_duration_ms = parse_duration_api,
    .parse_size = parse_size_api,
    .http_stream_start = http_stream_start,
    .http_stream_write = http_stream_write,
    .http_stream_end = http_stream_end,
    .engine_info = engine_info,
    .storage_enabled = storage_enabled,
    .hold = hold,
    .hold_attach = hold_attach,
    .hold_release = hold_release,
    .flush_record_status = flush_record_status,
    .config_error = config_error,
    .config_bind = config_bind,
    .http_tls = http_tls,
};

}  // namespace

const dm_host_api *Engine::host_api() {
  return &kHostApi;
}

}  // namespace devmesh
