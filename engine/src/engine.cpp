// Engine setup and lifecycle: loading and validating the pipeline, starting instances in
// dependency order, the loop's wake-up drain and graceful shutdown. /health and /metrics are in
// engine_status.cpp.
#include "engine.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include "engine_options.h"
#include "engine_reload.h"
#include "http_server_impl.h"
#include "log.h"
#include "plugin_call.h"
#include "service_notify.h"

namespace devmesh {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

const char *Instance::intern_name(const std::string &name) {
  static std::mutex mu;
  static std::set<std::string> names;  // nodes never move: their c_str() stay valid
  std::lock_guard<std::mutex> lk(mu);
  return names.insert(name).first->c_str();
}

namespace {
// SIGTERM or SIGINT before run() installs the loop's handlers: kept here and acted on once the
// engine runs (a graceful stop), instead of the default action ending the process with exit 143.
volatile sig_atomic_t g_early_signal = 0;
}  // namespace

static std::string where(const PipelineConfig &cfg, const PluginEntry &e) {
  YAML::Mark m = e.node.Mark();
  std::string s = cfg.file;
  if (m.line >= 0) s += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  return s + ": " + e.where();
}

Engine::Engine(PipelineConfig cfg) : cfg_(std::move(cfg)) {
  mark_loop_thread();  // main() makes the engine, creates the instances and runs the loop
  // SIGHUP reloads once the loop runs (run()); until then it must not end the process.
  signal(SIGHUP, SIG_IGN);
  struct sigaction early {};
  early.sa_handler = [](int signum) { g_early_signal = signum; };
  sigemptyset(&early.sa_mask);
  sigaction(SIGTERM, &early, nullptr);
  sigaction(SIGINT, &early, nullptr);
  uv_loop_init(&loop_);
  http_ = std::make_unique<HttpServer>(&loop_);
  start_ns_ = monotonic_ns();
  m_rss_ = metrics_.gauge("devmesh_process_resident_memory_bytes", "Resident set size", "");
  m_uptime_ = metrics_.gauge("devmesh_process_uptime_seconds", "Seconds since start", "");
  m_framing_refused_ = metrics_.counter(
      "devmesh_http_framing_refused_total",
      "HTTP requests refused (400) for conflicting Content-Length / Transfer-Encoding", "");
  m_unauthorized_ = metrics_.counter(
      "devmesh_http_unauthorized_total",
      "requests to /metrics or /reload refused (401) for a missing or wrong service.http_token",
      "");
}

Engine::~Engine() {
  // After a dry run (or a failed load) instances were created but never run.
  auto destroy = [](Instance *i) {
    PluginCall call(i->name.c_str(), "destroy");
    i->desc.destroy(i->state);
  };
  for (auto &in : inputs_)
    if (in->created) destroy(in.get());
  for (auto &f : filters_)
    if (f->created) destroy(f.get());
  for (auto &o : outputs_)
    if (o->created) destroy(o.get());
  // The HTTP server closes its own (h2o's) handles: stop it, let the closes run, destroy it,
  // and only then close whatever else is left.
  http_->stop();
  while (!http_->closed() && uv_run(&loop_, UV_RUN_ONCE) != 0) {
  }
  http_.reset();
  uv_walk(
      &loop_,
      [](uv_handle_t *h, void *) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

bool Engine::load(Problems &problems, std::vector<std::string> &errors, bool create_instances) {
  std::vector<std::string> dirs = cfg_.service.plugins_dir;
  if (dirs.empty()) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = 0;
      std::string d(exe);
      d = d.substr(0, d.rfind('/'));
      dirs.push_back(d + "/plugins");
      // An install under any prefix: PREFIX/bin/devmesh finds PREFIX/lib/devmesh/plugins.
      dirs.push_back(d + "/../lib/devmesh/plugins");
    }
    dirs.push_back(DEVMESH_DEFAULT_PLUGIN_DIR);
    dirs.push_back("/usr/local/lib/devmesh/plugins");
    dirs.push_back("/usr/lib/devmesh/plugins");
  }
  loader_ = std::make_unique<PluginLoader>(host_api(), dirs);

  Generation gen;
  bool ok = build_generation(
      cfg_, gen, problems, errors, [create_instances](Instance *) { return create_instances; },
      create_instances);
  // The first generation is adopted whole (a failed load is only destroyed).
  inputs_ = std::move(gen.inputs);
  filters_ = std::move(gen.filters);
  outputs_ = std::move(gen.outputs);
  notes_ = std::move(gen.notes);
  warnings_ = std::move(gen.warnings);
  in_use_ = std::move(gen.in_use);
  make_dirs_ = std::move(gen.make_dirs);
  build_info_json();
  return ok;
}

bool Engine::build_generation(const PipelineConfig &cfg, Generation &gen, Problems &problems,
                              std::vector<std::string> &errors,
                              const std::function<bool(Instance *)> &should_create,
                              bool whole_checks) {
  std::set<std::string> names;
  std::vector<InstanceView> views;  // for the whole-pipeline checks
  bool ok = true;
  auto add_entries = [&](const std::vector<PluginEntry> &entries) {
    for (const PluginEntry &e : entries) {
      std::string err;
      const LoadedPlugin *lp = loader_->load(e.name, e.path, err);
      if (!lp) {
        errors.push_back(where(cfg, e) + ": " + err);
        ok = false;
        continue;
      }
      const char *want = section_kind_name(e.section);
      if (std::strcmp(kind_name(lp->desc.kind), want) != 0) {
        errors.push_back(where(cfg, e) + ": '" + e.name + "' is " +
                         (lp->desc.kind == DM_FILTER ? "a " : "an ") + kind_name(lp->desc.kind) +
                         " plugin, but it is listed under pipeline." + e.section);
        ok = false;
        continue;
      }
      std::vector<const dm_option *> opts;
      for (uint32_t i = 0; i < lp->desc.option_count; i++) opts.push_back(&lp->desc.options[i]);
      for (const dm_option &o : engine_options(e.section)) opts.push_back(&o);
      auto vcfg = validate_entry(cfg, e, opts, problems);
      if (!vcfg) {
        ok = false;
        continue;
      }
      std::string name = e.alias.empty() ? e.name + "." + std::to_string(e.index) : e.alias;
      if (!names.insert(name).second) {
        errors.push_back(where(cfg, e) + ": instance name '" + name +
                         "' is used twice (give each an alias)");
        ok = false;
        continue;
      }
      auto get = [&](const char *k) -> const OptionValue * {
        auto it = vcfg->values.find(k);
        return it == vcfg->values.end() ? nullptr : &it->second;
      };
      Instance *inst = nullptr;
      if (e.section == "inputs") {
        auto in = std::make_unique<InputInstance>(this, lp, name);
        in->tag = get("tag") ? get("tag")->text : e.name;
        inst = in.get();
        gen.inputs.push_back(std::move(in));
      } else if (e.section == "filters") {
        auto f = std::make_unique<FilterInstance>(this, lp, name);
        f->match = get("match")->text;
        inst = f.get();
        gen.filters.push_back(std::move(f));
      } else {
        auto o = std::make_unique<OutputInstance>(this, lp, name);
        o->match = get("match")->text;
        o->batch_size = static_cast<uint32_t>(get("batch_size")->integer);
        o->batch_bytes = static_cast<size_t>(get("batch_bytes")->integer);
        o->flush_interval_ms =
            get("flush_interval") ? get("flush_interval")->integer : cfg.service.flush_interval_ms;
        o->adaptive_flush = get("flush")->text != "interval";
        o->workers = static_cast<uint32_t>(get("workers")->integer);
        o->in_flight = static_cast<uint32_t>(get("in_flight")->integer);
        o->retry_limit = get("retry_limit")->integer;
        o->retry_wait_ms = get("retry_wait")->integer;
        o->retry_max_wait_ms = get("retry_max_wait")->integer;
        o->queue_limit = static_cast<size_t>(get("queue_limit")->integer);
        // Resolved against the file's directory in validation; checked by check_pipeline.
        if (get("dead_letter_path")) o->dead_letter_path = get("dead_letter_path")->text;
        inst = o.get();
        gen.outputs.push_back(std::move(o));
      }
      views.push_back({e.section, e.index, name, &lp->desc, vcfg.get(), "", ""});
      if (e.section == "inputs") views.back().tag = static_cast<InputInstance *>(inst)->tag;
      if (e.section == "filters") views.back().match = static_cast<FilterInstance *>(inst)->match;
      if (e.section == "outputs") views.back().match = static_cast<OutputInstance *>(inst)->match;
      inst->cfg = std::move(vcfg);
      register_metrics(inst);
    }
  };
  add_entries(cfg.inputs);
  add_entries(cfg.filters);
  add_entries(cfg.outputs);
  ok = ok && problems.empty();

  // Every instance whose entry is valid is created even when another is not, so one dry run
  // lists the problems every plugin finds (create() must not start anything).
  Problems found;  // reported through config_error, each at its place in the file
  auto create = [&](Instance *i) {
    if (should_create && !should_create(i)) return;
    if (!create_instance(i, found, errors)) ok = false;
  };
  for (auto &o : gen.outputs) create(o.get());
  for (auto &f : gen.filters) create(f.get());
  for (auto &in : gen.inputs) create(in.get());
  append_in_order(found, problems);

  // What no entry can see alone: topology, shared files and addresses, directories. Addresses
  // this engine serves already (a reload) are not test-bound.
  if (whole_checks) {
    std::set<std::string> listening;
    auto served = [&](const std::string &spec) {
      http_internal::ListenAddress a;
      std::string error;
      if (http_->listening(spec) && http_internal::parse_listen(spec, a, error))
        listening.insert(a.key);
    };
    if (!cfg.service.http_listen.empty()) served(cfg.service.http_listen);
    // Addresses running instances serve on sockets of their own (the syslog input's TCP or UDP
    // port): a reload that keeps the instance keeps its socket, so they are not test-bound.
    auto held = [&](const Instance &i) {
      if (!i.started || !i.cfg) return;
      for (uint32_t k = 0; k < i.desc.option_count; ++k) {
        const dm_option &o = i.desc.options[k];
        if (!o.key || !(o.flags & DM_OPT_LISTEN)) continue;
        http_internal::ListenAddress a;
        std::string error;
        if (auto it = i.cfg->values.find(o.key);
            it != i.cfg->values.end() && !http_->listening(it->second.text) &&
            http_internal::parse_listen(it->second.text, a, error))
          listening.insert(a.key);
      }
    };
    for (auto &in : inputs_) held(*in);
    for (auto &o : outputs_) held(*o);
    for (const InstanceView &v : views)
      for (const dm_option *o : v.cfg->options)
        if (o && o->key && (o->flags & DM_OPT_LISTEN))
          if (auto it = v.cfg->values.find(o->key); it != v.cfg->values.end())
            served(it->second.text);
    PipelineCheckResult checked;
    check_pipeline(cfg, views, listening, problems, checked);
    if (!checked.problems.empty()) ok = false;
    append_in_order(checked.problems, problems);
    gen.warnings = std::move(checked.warnings);
    gen.in_use = std::move(checked.in_use);
    gen.notes.insert(gen.notes.end(), checked.notes.begin(), checked.notes.end());
    gen.make_dirs = std::move(checked.make_dirs);
  }
  return ok;
}

bool Engine::create_instance(Instance *i, Problems &found, std::vector<std::string> &errors) {
  bool ok = true;
  int rc;
  {
    PluginCall call(i->name.c_str(), "create");
    rc = i->desc.create(host_api(), i, i->cfg.get(), &i->state);
  }
  if (rc == 0) i->created = true;
  // A reported problem refuses the start even when create() returned 0 after it.
  if (!i->cfg->problems.empty()) ok = false;
  for (Problem &p : i->cfg->problems) found.add(std::move(p));
  i->cfg->problems.clear();
  if (rc != 0) {
    errors.push_back(i->name + ": the " + kind_name(i->desc.kind) + " plugin '" + i->desc.name +
                     "' refused its configuration (see the lines above)");
    ok = false;
  }
  return ok;
}

size_t Engine::output_slot(const std::string &name) {
  auto it = output_slots_.find(name);
  if (it != output_slots_.end()) return it->second;
  const size_t slot = output_slots_.size();
  output_slots_.emplace(name, slot);
  return slot;
}

int Engine::run() {
  // The loop thread: its plugin calls are watched, and it gets an alternate signal stack.
  const uint64_t ms = 1000000ull;
  WatchedThread loop_thread("loop", static_cast<uint64_t>(cfg_.service.watchdog_ms) * ms);
  watchdog_ =
      std::make_unique<Watchdog>(metrics_, static_cast<uint64_t>(cfg_.service.watchdog_ms) * ms,
                                 static_cast<uint64_t>(cfg_.service.watchdog_flush_ms) * ms);
  uv_async_init(&loop_, &wake_, [](uv_async_t *a) { static_cast<Engine *>(a->data)->drain(); });
  wake_.data = this;
  auto on_signal = [](uv_signal_t *s, int signum) {
    auto *e = static_cast<Engine *>(s->data);
    if (++e->signals_ > 1) {
      log_msg(DM_LOG_WARN, nullptr, "second signal (%s): exiting at once", strsignal(signum));
      _exit(130);
    }
    log_msg(DM_LOG_INFO, nullptr, "%s: shutting down (grace %lld ms)", strsignal(signum),
            static_cast<long long>(e->cfg_.service.grace_ms));
    e->shutdown();
  };
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  // SIGHUP re-reads the configuration (it used to end the process with records in flight).
  uv_signal_start(
      &sighup_,
      [](uv_signal_t *s, int) {
        log_msg(DM_LOG_INFO, nullptr, "SIGHUP: reloading the configuration");
        static_cast<Engine *>(s->data)->request_reload(nullptr);
      },
      SIGHUP);
  uv_unref(reinterpret_cast<uv_handle_t *>(&sigterm_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&sigint_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&sighup_));
  uv_timer_init(&loop_, &grace_timer_);
  grace_timer_.data = this;
  uv_timer_init(&loop_, &reload_timer_);
  reload_timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t *>(&reload_timer_));
  m_reload_applied_ = metrics_.counter("devmesh_reloads_total",
                                       "Configuration reloads (SIGHUP, POST /reload), by result",
                                       "result=\"applied\"");
  m_reload_refused_ = metrics_.counter("devmesh_reloads_total",
                                       "Configuration reloads (SIGHUP, POST /reload), by result",
                                       "result=\"refused\"");
  signal(SIGPIPE, SIG_IGN);
  http_->set_shutdown_grace(static_cast<uint64_t>(cfg_.service.grace_ms));

  for (auto &in : inputs_) in->inbox.open(&loop_, in.get());
  for (auto &o : outputs_) {
    o->queue.init(&loop_);
    o->index = output_slot(o->name);
    o->name_hash = Storage::output_hash(o->name);
    for (auto &in : inputs_)
      if (tag_matches(o->match, in->tag)) o->feeders.push_back(in.get());
  }
  for (size_t i = 0; i < filters_.size(); i++) filters_[i]->order = i;
  for (auto &in : inputs_) in->route = route_for(in->tag);

  for (const std::string &w : warnings_) log_msg(DM_LOG_WARN, nullptr, "%s", w.c_str());
  // Every directory the pipeline writes to, before anything opens a file in one.
  bool ok = make_directories(make_dirs_);
  // Storage opens (and replays into the outputs' disk backlogs) before anything starts.
  if (!cfg_.service.storage_path.empty() && !open_storage()) ok = false;
  auto start = [&](Instance *i) {
    if (ok && !start_instance(i)) ok = false;
  };
  for (auto &o : outputs_) {
    std::string err;
    if (ok && !o->queue.start_workers(err)) {
      log_msg(DM_LOG_ERROR, o->name.c_str(), "%s", err.c_str());
      ok = false;
    }
    start(o.get());
  }
  if (storage_)
    for (auto &o : outputs_) schedule_pump(o.get());
  for (auto &f : filters_) start(f.get());
  for (auto &in : inputs_) start(in.get());
  if (ok && !cfg_.service.http_listen.empty()) {
    std::string err;
    auto h = [this](dm_http_request *r) { serve_health(r); };
    auto m = [this](dm_http_request *r) {
      if (authorized(r)) serve_metrics(r);
    };
    auto r = [this](dm_http_request *req) {
      if (authorized(req)) request_reload(req);
    };
    const ServiceConfig &sc = cfg_.service;
    HttpServer::Tls tls{sc.tls_cert, sc.tls_key, sc.tls_ca, sc.tls_min_version};
    if (!http_->set_tls(sc.http_listen, tls, err, nullptr, "service") ||
        !http_->add_route(cfg_.service.http_listen, "GET", "/health", h, err) ||
        !http_->add_route(cfg_.service.http_listen, "GET", "/metrics", m, err) ||
        !http_->add_route(cfg_.service.http_listen, "POST", "/reload", r, err)) {
      log_msg(DM_LOG_ERROR, nullptr, "service.http_listen: %s", err.c_str());
      ok = false;
    }
  }
  if (ok) {
    std::string err;
    if (!http_->start(err)) {
      log_msg(DM_LOG_ERROR, nullptr, "%s", err.c_str());
      ok = false;
    }
  }
  if (!ok) {
    exit_code_ = 1;
    finish_shutdown();
  } else {
    log_msg(DM_LOG_INFO, nullptr, "devmesh %s running: %zu inputs, %zu filters, %zu outputs",
            DEVMESH_VERSION, inputs_.size(), filters_.size(), outputs_.size());
    log_listeners();
    watchdog_->start(&loop_);
    // Every listener is bound (http_->start): a Type=notify unit is "active" from here.
    service_notify::start_watchdog(&loop_);
    service_notify::ready("running: " + std::to_string(inputs_.size()) + " inputs, " +
                          std::to_string(filters_.size()) + " filters, " +
                          std::to_string(outputs_.size()) + " outputs");
    if (g_early_signal != 0) {
      log_msg(DM_LOG_INFO, nullptr, "%s during start: shutting down (grace %lld ms)",
              strsignal(g_early_signal), static_cast<long long>(cfg_.service.grace_ms));
      ++signals_;
      shutdown();
    }
    check_idle();
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  return exit_code_;
}

bool Engine::start_instance(Instance *i) {
  int rc = 0;
  if (i->desc.start) {
    PluginCall call(i->name.c_str(), "start");
    rc = i->desc.start(i->state);
  }
  if (rc != 0) {
    log_msg(DM_LOG_ERROR, i->name.c_str(), "failed to start");
    return false;
  }
  i->started = true;
  return true;
}

void Engine::destroy_instance(Instance *i) {
  if (!i->created) return;
  {
    PluginCall call(i->name.c_str(), "destroy");
    i->desc.destroy(i->state);
  }
  i->created = false;
}

// Where every listener serves (after start and after each reload): scheme, address, whether
// client certificates are required, and the routes.
void Engine::log_listeners() {
  for (const std::string &line : http_->describe())
    log_msg(DM_LOG_INFO, nullptr, "serving %s", line.c_str());
}

void Engine::complete(Completion c) {
  std::lock_guard<std::mutex> lk(cq_mu_);
  if (wake_closed_) {
    // A late completion after shutdown: the records were never acknowledged, so their inputs
    // re-send them after a restart. The process is exiting; the chunk is left to it.
    return;
  }
  cq_.push_back(std::move(c));
  uv_async_send(&wake_);
}

void Engine::defer(std::function<void()> fn) {
  if (finished_) return;  // nothing runs after the instances are gone
  deferred_.push_back(std::move(fn));
  uv_async_send(&wake_);
}

void Engine::drain() {
  for (int round = 0; round < 64; round++) {
    std::vector<Completion> done;
    {
      std::lock_guard<std::mutex> lk(cq_mu_);
      done.swap(cq_);
    }
    for (auto &c : done) c.chunk->out->queue.on_completion(c);
    auto emitted = std::move(emitted_);
    emitted_.clear();
    for (auto &[f, b] : emitted) {
      std::string tag(b->pub.tag.ptr, b->pub.tag.len);
      Route *r = route_for(tag);
      size_t first = 0;
      while (first < r->filters.size() && r->filters[first]->order <= f->order) first++;
      run_chain(b, first, r);
    }
    // STORED before DONE: a ticket whose DONE is due is queued behind its STORED.
    const bool acked = delivery_.send_acks();
    auto calls = std::move(deferred_);
    deferred_.clear();
    for (auto &fn : calls) fn();
    if (done.empty() && emitted.empty() && calls.empty() && !acked) break;
  }
  // A reload waits for retiring instances (tickets finished, queues drained).
  if (reload_ || retiring_outputs_ || retiring_inputs_) reload_progress();
  check_idle();
  if (finish_requested_ && deferred_.empty() && !delivery_.acks_due()) {
    finish_shutdown();
    return;
  }
  if (!deferred_.empty() || !emitted_.empty() || delivery_.acks_due() || delivery_.stored_due() ||
      finish_requested_)
    uv_async_send(&wake_);
}

bool Engine::outputs_empty() const {
  for (auto &o : outputs_) {
    if (!o->queue.empty()) return false;
    // A disk backlog waits for the next start when stopping; otherwise it is work left.
    if (!stopping_ && !o->queue.backlog.blocks.empty()) return false;
  }
  return true;
}

void Engine::input_finished(InputInstance *in) {
  in->inbox.drain();  // its threads' last submits count before its end
  in->finished = true;
  defer([this] {
    for (auto &i : inputs_)
      if (!i->finished) return check_idle();
    // Nothing more will arrive: partial chunks need not wait for their flush interval.
    for (auto &o : outputs_) o->queue.flush_all();
    check_idle();
  });
}

void Engine::check_idle() {
  if (finished_ || finish_requested_) return;
  bool idle =
      outputs_empty() && emitted_.empty() && !delivery_.acks_due() && delivery_.open_tickets() == 0;
  if (stopping_ && storage_ && !idle) {
    // Tickets whose records wait in a disk backlog are safe there: stopping need not wait for
    // their delivery, only for their STORED acks and what is in memory.
    idle =
        outputs_empty() && emitted_.empty() && !delivery_.acks_due() && delivery_.stored_settled();
  }
  if (stopping_) {
    // Records filters emitted at their stop() were routed after shutdown() sealed the
    // outputs: they go out now, not after a flush_interval.
    if (emitted_.empty())
      for (auto &o : outputs_)
        if (o->queue.has_filling()) {
          o->queue.flush_all();
          idle = false;
        }
    // Finishing destroys instances: never from deep inside a completion, always from drain().
    if (idle) {
      finish_requested_ = true;
      uv_async_send(&wake_);
    }
    return;
  }
  if (cfg_.service.exit_when_done && !inputs_.empty()) {
    for (auto &in : inputs_)
      if (!in->finished && !in->retiring) return;
    // Tickets that filters hold (dedup's collapsed repeats) wait for the records those filters
    // emit at their stop(): with nothing else in flight, stopping is what finishes them.
    if (!idle && !(outputs_empty() && emitted_.empty() && !delivery_.acks_due())) return;
    log_msg(DM_LOG_INFO, nullptr, "every input finished and every record is done");
    shutdown();
  }
}

void Engine::shutdown() {
  if (stopping_ || finished_) return;
  stopping_ = true;
  service_notify::stopping();
  for (auto &in : inputs_) {
    if (in->stopped) continue;  // retired by a reload already
    in->stopped = true;
    in->inbox.close();  // its threads' submits from now on are refused (stop() joins them)
    if (in->started && in->desc.stop) {
      PluginCall call(in->name.c_str(), "stop");
      in->desc.stop(in->state);
    }
    in->inbox.drain();  // what they submitted before is routed like any accepted submit
  }
  // Filters emit what they still hold (drop's open windows, dedup's pending repeats) at
  // stop(); check_idle() waits for those records to be delivered like any other.
  for (auto &f : filters_)
    if (f->started && f->desc.stop) {
      PluginCall call(f->name.c_str(), "stop");
      f->desc.stop(f->state);
    }
  for (auto &o : outputs_) o->queue.flush_all();
  uv_timer_start(
      &grace_timer_,
      [](uv_timer_t *t) {
        auto *e = static_cast<Engine *>(t->data);
        size_t left = 0;
        for (auto &o : e->outputs_) left += o->queue.queued_records();
        log_msg(DM_LOG_WARN, nullptr,
                "grace period over with %zu records undelivered: their inputs re-send them after "
                "restart (journald re-reads, http clients retry)",
                left);
        // Flushes may be blocked inside a plugin: leave without joining or destroying.
        _exit(0);
      },
      cfg_.service.grace_ms, 0);
  check_idle();
}

void Engine::finish_shutdown() {
  if (finished_) return;
  finished_ = true;
  {
    std::lock_guard<std::mutex> lk(cq_mu_);
    wake_closed_ = true;
  }
  uv_timer_stop(&grace_timer_);
  if (watchdog_) watchdog_->stop();
  // A reload in progress ends here: its successors never start (the shutdown destroys them).
  if (reload_) {
    const std::string body = R"({"status":"refused","problems":["shutting down"]})";
    reply_reload(503, body);
    reload_.reset();
  }
  for (dm_http_request *req : reload_waiting_)
    HttpServer::reply(req, 503, "application/json", "{}", 2);
  reload_waiting_.clear();
  service_notify::stop_watchdog();
  http_->stop();
  auto stop = [](Instance *i) {
    PluginCall call(i->name.c_str(), "stop");
    i->desc.stop(i->state);
  };
  for (auto &in : inputs_) {
    if (in->started && in->desc.stop && !in->stopped) stop(in.get());
    in->inbox.refuse();  // the start failed: nothing routes its threads' submits any more
  }
  if (!stopping_)  // shutdown() stopped them already
    for (auto &f : filters_)
      if (f->started && f->desc.stop) stop(f.get());
  for (auto &o : outputs_) {
    o->queue.stop_workers();  // first: no flush may run while the plugin stops
    if (o->started && o->desc.stop) stop(o.get());
  }
  // Whatever never got delivered (start failure) is released, not acknowledged.
  for (auto &o : outputs_) o->queue.release_all();
  // Final fsync; segments every output finished are deleted, the rest wait for the next start.
  if (storage_retry_) {
    uv_close(reinterpret_cast<uv_handle_t *>(storage_retry_),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    storage_retry_ = nullptr;
  }
  if (storage_) storage_->stop();
  auto destroy = [](Instance *i) {
    PluginCall call(i->name.c_str(), "destroy");
    i->desc.destroy(i->state);
    i->created = false;
  };
  for (auto &in : inputs_)
    if (in->created) destroy(in.get());
  for (auto &f : filters_)
    if (f->created) destroy(f.get());
  for (auto &o : outputs_)
    if (o->created) destroy(o.get());
  uv_close(reinterpret_cast<uv_handle_t *>(&wake_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&sighup_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&reload_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&grace_timer_), nullptr);
  log_msg(DM_LOG_INFO, nullptr, "stopped");
}

}  // namespace devmesh
