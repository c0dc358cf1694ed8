// Live reload of the configuration (SIGHUP, POST /reload): the file is read and validated like at
// start, diffed by instance name against the running pipeline, and applied so that no record is
// lost or delivered twice. Unchanged instances keep everything (state, queues, listeners);
// changed and removed ones drain and stop; new ones start. An invalid file changes nothing.
//
// Order (all on the loop, from drain()'s deferred calls): filters that go are stopped and what
// they emit is routed through the old routes; inputs that go are stopped and kept until every
// ticket they opened is finished (their checkpoints), and only then are their successors
// started; outputs that go take no new records and drain their queues to their old plugin. The
// route table is rebuilt in between.
#include <cinttypes>
#include <cstring>
#include <ctime>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine.h"
#include "engine_reload.h"
#include "log.h"
#include "plugin_call.h"
#include "service_notify.h"

namespace devmesh {

namespace {

bool same_value(const OptionValue &a, const OptionValue &b) {
  return a.type == b.type && a.text == b.text && a.integer == b.integer &&
         (a.number == b.number || (a.number != a.number && b.number != b.number)) &&
         a.items == b.items && a.entries == b.entries;
}

// Same plugin and equal validated values (after ${VAR} expansion, defaults applied), engine
// options included.
bool same_settings(const Instance &a, const Instance &b) {
  if (a.plugin != b.plugin || a.desc.kind != b.desc.kind) return false;
  const auto &va = a.cfg->values, &vb = b.cfg->values;
  if (va.size() != vb.size()) return false;
  for (auto ia = va.begin(), ib = vb.begin(); ia != va.end(); ++ia, ++ib)
    if (ia->first != ib->first || !same_value(ia->second, ib->second)) return false;
  // What the engine derives from the service section or the file's place.
  auto *oa = dynamic_cast<const OutputInstance *>(&a);
  auto *ob = dynamic_cast<const OutputInstance *>(&b);
  if (oa && ob)
    return oa->flush_interval_ms == ob->flush_interval_ms &&
           oa->dead_letter_path == ob->dead_letter_path;
  return true;
}

YAML::Mark mark_of(const YAML::Node &root, std::initializer_list<const char *> keys) {
  YAML::Mark m = YAML::Mark::null_mark();
  YAML::Node n = root;
  for (const char *k : keys) {
    if (!n.IsMap() || !n[k]) break;
    n = n[k];
    m = n.Mark();
  }
  return m;
}

// Service options the running engine cannot take over: a problem each, naming the key.
void check_service(const PipelineConfig &now, const PipelineConfig &next, Problems &problems) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(next.file);
  } catch (const std::exception &) {
  }
  const ServiceConfig &a = now.service, &b = next.service;
  auto check = [&](bool same, std::initializer_list<const char *> keys, const char *path) {
    if (same) return;
    problems.add(next.file, mark_of(root, keys), path,
                 "changed: needs a restart (a reload cannot apply it)");
  };
  check(a.plugins_dir == b.plugins_dir, {"service", "plugins_dir"}, "service.plugins_dir");
  check(a.http_listen == b.http_listen, {"service", "http_listen"}, "service.http_listen");
  check(a.watchdog_ms == b.watchdog_ms, {"service", "watchdog"}, "service.watchdog");
  check(a.watchdog_flush_ms == b.watchdog_flush_ms, {"service", "watchdog_flush"},
        "service.watchdog_flush");
  // The files of service.tls are re-read on reload (renewed certificates); which files is fixed.
  check(a.tls_cert == b.tls_cert && a.tls_key == b.tls_key && a.tls_ca == b.tls_ca &&
            a.tls_min_version == b.tls_min_version,
        {"service", "tls"}, "service.tls");
  check(a.storage_path == b.storage_path, {"service", "storage", "path"}, "service.storage.path");
  check(a.storage_sync == b.storage_sync, {"service", "storage", "sync"}, "service.storage.sync");
  check(a.storage_sync_interval_ms == b.storage_sync_interval_ms,
        {"service", "storage", "sync_interval"}, "service.storage.sync_interval");
  check(a.storage_max_size == b.storage_max_size, {"service", "storage", "max_size"},
        "service.storage.max_size");
  check(a.storage_when_full == b.storage_when_full, {"service", "storage", "when_full"},
        "service.storage.when_full");
  check(a.storage_segment_size == b.storage_segment_size, {"service", "storage", "segment_size"},
        "service.storage.segment_size");
}

std::string utc_now() {
  char buf[32];
  time_t t = time(nullptr);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_list(Writer &w, const char *key, const std::vector<std::string> &items) {
  w.Key(key);
  w.StartArray();
  for (const std::string &s : items) w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  w.EndArray();
}

template <class T>
T *find_named(std::vector<std::unique_ptr<T>> &list, const std::string &name) {
  for (auto &p : list)
    if (p && p->name == name && !p->retiring) return p.get();
  return nullptr;
}

FilterInstance *find_filter(std::vector<std::unique_ptr<FilterInstance>> &list,
                            const std::string &name) {
  for (auto &p : list)
    if (p && p->name == name) return p.get();
  return nullptr;
}

}  // namespace

void Engine::request_reload(dm_http_request *req) {
  if (stopping_ || finished_) {
    if (req) {
      const std::string body = R"({"status":"refused","problems":["shutting down"]})";
      HttpServer::reply(req, 503, "application/json", body.data(), body.size());
    }
    return;
  }
  if (req) reload_waiting_.push_back(req);
  if (reload_) {
    // One is applying: the file may have changed since it was read, so one more follows it.
    if (reload_->reading) {
      reload_again_ = true;
      log_msg(DM_LOG_INFO, nullptr, "a reload is being applied: another one follows it");
    }
    return;
  }
  reload_ = std::make_unique<Reload>();
  defer([this] { start_reload(); });
}

void Engine::start_reload() {
  if (!reload_ || stopping_) return;
  reload_->reading = true;
  reload_->requests = std::move(reload_waiting_);
  reload_waiting_.clear();
  service_notify::reloading();
  log_msg(DM_LOG_INFO, nullptr, "reloading %s", cfg_.file.c_str());

  PipelineConfig next;
  Problems problems;
  std::vector<std::string> errors;
  Generation gen;
  std::set<Instance *> &unchanged = reload_->same;
  bool ok = load_pipeline(cfg_.file, next, problems);
  if (ok) check_service(cfg_, next, problems);
  if (ok) {
    // Only new and changed instances are created: an unchanged one keeps running as it is.
    ok = build_generation(
        next, gen, problems, errors,
        [&](Instance *i) {
          Instance *old = nullptr;
          if (auto *in = dynamic_cast<InputInstance *>(i))
            old = find_named(inputs_, in->name);
          else if (auto *f = dynamic_cast<FilterInstance *>(i))
            old = find_filter(filters_, f->name);
          else
            old = find_named(outputs_, i->name);
          if (old && same_settings(*old, *i)) {
            unchanged.insert(i);
            return false;
          }
          return true;
        },
        true);
    // Another process on an address the new file asks for: its instance could not start.
    for (const Problem &p : gen.in_use.list()) problems.add(p);
  }
  if (!ok || !problems.empty() || !errors.empty()) {
    for (auto &in : gen.inputs) destroy_instance(in.get());
    for (auto &f : gen.filters) destroy_instance(f.get());
    for (auto &o : gen.outputs) destroy_instance(o.get());
    std::vector<std::string> lines;
    for (const Problem &p : problems.list()) lines.push_back(p.str());
    for (const std::string &e : errors) lines.push_back(e);
    for (const std::string &l : lines) log_msg(DM_LOG_ERROR, nullptr, "%s", l.c_str());
    log_msg(DM_LOG_ERROR, nullptr,
            "reload refused: %zu problem%s in %s; the running pipeline is unchanged", lines.size(),
            lines.size() == 1 ? "" : "s", cfg_.file.c_str());
    m_reload_refused_->add(1);
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("status");
    w.String("refused");
    write_list(w, "problems", lines);
    w.EndObject();
    const std::string body(sb.GetString(), sb.GetSize());
    rapidjson::StringBuffer hb;
    Writer h(hb);
    h.StartObject();
    h.Key("time");
    h.String(utc_now().c_str());
    h.Key("result");
    h.String("refused");
    write_list(h, "problems", lines);
    h.EndObject();
    last_reload_json_.assign(hb.GetString(), hb.GetSize());
    reload_->refused = true;
    reply_reload(422, body);
    finish_reload();
    return;
  }
  // The unchanged instances' stand-ins were only validated: the running ones stay.
  apply_reload(next, gen);
}

void Engine::apply_reload(PipelineConfig &next, Generation &gen) {
  Reload &r = *reload_;
  std::set<Instance *> kept;
  // A new-generation instance against the running one of its name (or none): true when the
  // running one is kept as it is; else it is reported changed or added.
  auto keeps = [&](Instance *fresh, Instance *old) {
    if (old && r.same.count(fresh)) {
      kept.insert(old);
      r.unchanged++;
      return true;
    }
    (old ? r.changed : r.added).push_back(fresh->name);
    return false;
  };

  // 1. Inputs that go: stopped now, their last submits routed through the old chain while its
  //    filters still run; destroyed once their tickets are finished, and only then do their
  //    successors start.
  std::vector<std::unique_ptr<InputInstance>> inputs;
  for (auto &ni : gen.inputs) {
    InputInstance *old = find_named(inputs_, ni->name);
    if (!keeps(ni.get(), old)) ni->predecessor = old;
  }
  for (auto &in : inputs_) {
    if (in->retiring || kept.count(in.get())) continue;
    if (!find_named(gen.inputs, in->name)) r.removed.push_back(in->name);
    in->retiring = true;
    in->stopped = true;
    in->inbox.close();
    if (in->started && in->desc.stop) {
      PluginCall call(in->name.c_str(), "stop");
      in->desc.stop(in->state);
    }
    in->inbox.drain();
  }
  // A new input starts once every input retiring now is gone, not only one of its own name: a
  // renamed http input serves the same address and path, a renamed journald the same state file.
  bool inputs_retiring = false;
  for (auto &in : inputs_)
    if (in->retiring && in->created) inputs_retiring = true;
  for (auto &ni : gen.inputs)
    if (!r.same.count(ni.get())) ni->waits_for_retirees = inputs_retiring;

  // 2. Filters that go: what they hold comes out at stop() and goes through the old routes now,
  //    so stand-ins and holds finish normally; then they are destroyed.
  std::vector<std::unique_ptr<FilterInstance>> filters;
  std::vector<FilterInstance *> retired_filters;
  for (auto &nf : gen.filters) keeps(nf.get(), find_filter(filters_, nf->name));
  for (auto &f : filters_)
    if (!kept.count(f.get())) {
      if (!find_filter(gen.filters, f->name)) r.removed.push_back(f->name);
      retired_filters.push_back(f.get());
    }
  // One at a time in chain order, routing what each emits before the next stops: what the first
  // releases must meet the later ones while they still run (a dedup further on takes holds only
  // a running dedup releases).
  for (FilterInstance *f : retired_filters) {
    if (f->started && f->desc.stop) {
      PluginCall call(f->name.c_str(), "stop");
      f->desc.stop(f->state);
    }
    f->started = false;
    while (!emitted_.empty()) {
      auto emitted = std::move(emitted_);
      emitted_.clear();
      for (auto &[from, b] : emitted) {
        std::string tag(b->pub.tag.ptr, b->pub.tag.len);
        Route *rt = route_for(tag);
        size_t first = 0;
        while (first < rt->filters.size() && rt->filters[first]->order <= from->order) first++;
        run_chain(b, first, rt);
      }
    }
  }
  for (FilterInstance *f : retired_filters) destroy_instance(f);

  // 3. Outputs that go: no new records from now on; the filling chunk is sealed and the queue
  //    drains to the old plugin. A successor of the same name takes over the disk backlog.
  std::vector<std::unique_ptr<OutputInstance>> outputs;
  for (auto &no : gen.outputs) keeps(no.get(), find_named(outputs_, no->name));
  for (auto &o : outputs_) {
    if (o->retiring || kept.count(o.get())) continue;
    OutputInstance *successor = find_named(gen.outputs, o->name);
    if (!successor) r.removed.push_back(o->name);
    o->retiring = true;
    retiring_outputs_ = true;
    o->feeders.clear();
    http_->remove_routes(o.get());  // its successor may serve the same paths
    o->queue.flush_all();
    // Its disk backlog goes to its successor once that one started (step 5); until then, and
    // for good if it cannot start, the retiring one keeps pumping it to its old plugin.
    if (successor) r.handovers.emplace_back(o.get(), successor);
  }

  // 4. The swap: the new generation in the file's order, the retiring ones after it until they
  //    go; routes, filter order and feeders recomputed.
  auto adopt = [&](auto &running, auto &fresh, auto &out, bool keep_retiring) {
    for (auto &n : fresh) {
      bool found = false;
      for (auto &p : running)
        if (p && kept.count(p.get()) && p->name == n->name) {
          out.push_back(std::move(p));
          found = true;
          break;
        }
      if (!found) {
        r.fresh.insert(n.get());
        out.push_back(std::move(n));
      }
    }
    for (auto &p : running)
      if (p && (keep_retiring && p->retiring)) out.push_back(std::move(p));
  };
  adopt(inputs_, gen.inputs, inputs, true);
  adopt(filters_, gen.filters, filters, false);
  adopt(outputs_, gen.outputs, outputs, true);
  // What is left of the old filters was destroyed above; the new generation's unchanged
  // stand-ins were never created.
  inputs_ = std::move(inputs);
  filters_ = std::move(filters);
  outputs_ = std::move(outputs);
  notes_ = std::move(gen.notes);
  for (size_t i = 0; i < filters_.size(); i++) filters_[i]->order = i;
  for (auto &o : outputs_) {
    if (o->retiring) continue;
    if (r.fresh.count(o.get())) {
      o->queue.init(&loop_);
      o->index = output_slot(o->name);
      o->name_hash = Storage::output_hash(o->name);
    }
    o->feeders.clear();
    for (auto &in : inputs_)
      if (!in->retiring && tag_matches(o->match, in->tag)) o->feeders.push_back(in.get());
  }
  routes_.clear();
  for (auto &in : inputs_) in->route = route_for(in->tag);
  recompute_pauses();

  // Service options that apply live.
  dm_log_level lvl;
  if (next.service.log_level != cfg_.service.log_level &&
      parse_log_level(next.service.log_level, lvl))
    set_log_level(lvl);
  http_->set_shutdown_grace(static_cast<uint64_t>(next.service.grace_ms));
  cfg_ = std::move(next);
  build_info_json();

  // 5. Start: outputs (and their workers) before anything routes to them, then filters, then the
  //    inputs that replace nothing. Replacements start in reload_progress().
  // Directories the new file's paths need (mkdir -p, 0700), as at start.
  for (const std::string &w : gen.warnings) log_msg(DM_LOG_WARN, nullptr, "%s", w.c_str());
  const bool dirs_made = make_directories(gen.make_dirs);
  bool failed = false;  // an output that cannot start takes no records: routes without it
  for (auto &o : outputs_) {
    if (!r.fresh.count(o.get())) continue;
    std::string err;
    if (!dirs_made) {
      err = "a directory it needs cannot be made (see the lines above)";
    } else if (!o->queue.start_workers(err)) {
      log_msg(DM_LOG_ERROR, o->name.c_str(), "%s", err.c_str());
    } else if (!start_instance(o.get())) {
      err = "failed to start";
    } else {
      for (auto &[old, successor] : r.handovers) {
        if (successor != o.get() || old->queue.backlog.blocks.empty()) continue;
        log_msg(DM_LOG_INFO, old->name.c_str(),
                "reload: its successor takes over %" PRIu64 " records of its disk backlog",
                old->queue.backlog.records);
        o->queue.backlog.blocks = std::move(old->queue.backlog.blocks);
        o->queue.backlog.records = old->queue.backlog.records;
        old->queue.backlog.blocks.clear();
        old->queue.backlog.records = 0;
      }
      if (storage_) schedule_pump(o.get());
      continue;
    }
    r.start_errors.push_back(o->name + ": " + err);
    o->retiring = true;
    o->feeders.clear();
    retiring_outputs_ = true;
    failed = true;
  }
  if (failed) {
    routes_.clear();
    for (auto &in : inputs_) in->route = route_for(in->tag);
  }
  // A filter that cannot start leaves the chain (a filter never started may take holds that
  // nothing releases): destroyed, and the routes rebuilt without it.
  bool filter_failed = false;
  for (auto &f : filters_)
    if (r.fresh.count(f.get()) && !start_instance(f.get())) {
      r.start_errors.push_back(f->name + ": failed to start");
      destroy_instance(f.get());
      filter_failed = true;
    }
  if (filter_failed) {
    for (auto it = filters_.begin(); it != filters_.end();)
      it = (*it)->created ? std::next(it) : filters_.erase(it);
    for (size_t i = 0; i < filters_.size(); i++) filters_[i]->order = i;
    routes_.clear();
    for (auto &in : inputs_) in->route = route_for(in->tag);
  }
  for (auto &in : inputs_) {
    if (!r.fresh.count(in.get())) continue;
    in->inbox.open(&loop_, in.get());
    if (in->predecessor || in->waits_for_retirees) continue;
    if (!start_instance(in.get())) {
      r.start_errors.push_back(in->name + ": failed to start");
      http_->remove_routes(in.get());  // and its TLS claim
    }
  }
  std::string err;
  if (!http_->reload_tls(err)) log_msg(DM_LOG_WARN, nullptr, "reload: TLS: %s", err.c_str());
  log_listeners();
  log_msg(DM_LOG_INFO, nullptr,
          "reload applied: %zu added, %zu removed, %zu changed, %zu unchanged", r.added.size(),
          r.removed.size(), r.changed.size(), r.unchanged);
  uv_timer_start(
      &reload_timer_, [](uv_timer_t *t) { static_cast<Engine *>(t->data)->force_retire_inputs(); },
      static_cast<uint64_t>(cfg_.service.grace_ms), 0);
  reload_progress();
}

// An input retires only once every ticket it opened is finished, so its final checkpoint
// covers them; past service.grace the wait ends (records still delivered, checkpoint behind).
void Engine::force_retire_inputs() {
  if (stopping_ || finished_) return;
  for (auto &in : inputs_) {
    if (!in->retiring || !in->created || in->open_tickets == 0) continue;
    log_msg(DM_LOG_WARN, in->name.c_str(),
            "reload: %" PRIu64
            " tickets still open after the grace period: stopped anyway; their records are still "
            "delivered, but its checkpoint does not cover them, so its successor may read them "
            "again",
            in->open_tickets);
    http_->remove_routes(in.get());
    destroy_instance(in.get());
  }
  reload_progress();
}

void Engine::reload_progress() {
  if (finished_) return;
  // Retired inputs whose tickets are all finished go; their successors start.
  for (auto &in : inputs_) {
    if (!in->retiring || !in->created || in->open_tickets != 0) continue;
    http_->remove_routes(in.get());
    destroy_instance(in.get());
  }
  if (!stopping_) {
    bool retirees = false;
    for (auto &in : inputs_)
      if (in->retiring && in->created) retirees = true;
    for (auto &in : inputs_) {
      if (in->retiring || in->started || !in->created) continue;
      if (!in->predecessor && !in->waits_for_retirees) continue;
      if (in->predecessor && in->predecessor->created) continue;  // still draining
      if (in->waits_for_retirees && retirees) continue;
      in->predecessor = nullptr;
      in->waits_for_retirees = false;
      const bool ok = start_instance(in.get());
      if (!ok) http_->remove_routes(in.get());  // and its TLS claim
      if (!ok && reload_) reload_->start_errors.push_back(in->name + ": failed to start");
      if (ok && in->full_outputs > 0) {
        const int n = in->full_outputs;
        in->full_outputs = 0;
        pause_input(in.get());
        in->full_outputs = n;
      }
    }
  }
  // Retiring outputs whose queue is empty: workers stopped, then stop() and destroy().
  if (retiring_outputs_) {
    retiring_outputs_ = false;
    for (auto &o : outputs_) {
      if (!o->retiring) continue;
      if (!o->queue.empty() || !o->queue.backlog.blocks.empty() || !o->created ||
          o->queue.backlog.pump_scheduled) {
        if (o->created) retiring_outputs_ = true;
        continue;
      }
      o->queue.stop_workers();
      if (o->started && o->desc.stop) {
        PluginCall call(o->name.c_str(), "stop");
        o->desc.stop(o->state);
      }
      o->started = false;
      o->queue.release_all();
      http_->remove_routes(o.get());
      destroy_instance(o.get());
      log_msg(DM_LOG_INFO, o->name.c_str(), "reload: retired (its queue drained)");
    }
  }
  retiring_inputs_ = false;
  for (auto &in : inputs_)
    if (in->retiring) retiring_inputs_ = true;
  // Free what is gone, once no deferred call may still name it.
  if (deferred_.empty() && !stopping_) {
    for (auto it = inputs_.begin(); it != inputs_.end();) {
      InputInstance *in = it->get();
      if (in->retiring && !in->created && in->open_tickets == 0) {
        for (auto &other : inputs_)
          if (other->predecessor == in) other->predecessor = nullptr;
        auto *holder = it->release();
        it = inputs_.erase(it);
        holder->inbox.release([](void *p) { delete static_cast<InputInstance *>(p); }, holder);
      } else {
        ++it;
      }
    }
    for (auto it = outputs_.begin(); it != outputs_.end();)
      if ((*it)->retiring && !(*it)->created)
        it = outputs_.erase(it);
      else
        ++it;
  }
  if (!reload_ || !reload_->reading || stopping_) return;
  for (auto &in : inputs_)
    if ((in->predecessor || in->waits_for_retirees) && !in->started && in->created)
      return;  // still waiting
  finish_reload();
}

void Engine::finish_reload() {
  if (!reload_) return;
  // A removed input still waiting for its tickets keeps the grace timer: past it, it goes.
  bool waiting = false;
  for (auto &in : inputs_)
    if (in->retiring && in->created) waiting = true;
  if (!waiting) uv_timer_stop(&reload_timer_);
  Reload &r = *reload_;
  if (r.reading && !r.refused) {
    m_reload_applied_->add(1);
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("status");
    w.String("applied");
    write_list(w, "added", r.added);
    write_list(w, "removed", r.removed);
    write_list(w, "changed", r.changed);
    w.Key("unchanged");
    w.Uint64(r.unchanged);
    if (!r.start_errors.empty()) write_list(w, "errors", r.start_errors);
    w.EndObject();
    rapidjson::StringBuffer hb;
    Writer h(hb);
    h.StartObject();
    h.Key("time");
    h.String(utc_now().c_str());
    h.Key("result");
    h.String("applied");
    write_list(h, "problems", r.start_errors);
    h.EndObject();
    last_reload_json_.assign(hb.GetString(), hb.GetSize());
    reply_reload(200, std::string(sb.GetString(), sb.GetSize()));
  }
  service_notify::ready("reloaded");
  reload_.reset();
  if (reload_again_ && !stopping_) {
    reload_again_ = false;
    reload_ = std::make_unique<Reload>();
    defer([this] { start_reload(); });
  }
}

void Engine::reply_reload(int status, const std::string &body) {
  if (!reload_) return;
  for (dm_http_request *req : reload_->requests)
    HttpServer::reply(req, status, "application/json", body.data(), body.size());
  reload_->requests.clear();
}

// Every input's pause count from the outputs that feed on it now (a retiring output pauses
// nobody) and the storage.
void Engine::recompute_pauses() {
  for (auto &in : inputs_) {
    if (in->retiring) continue;
    int want = storage_full_ ? 1 : 0;
    for (auto &o : outputs_) {
      if (o->retiring || !o->queue.full()) continue;
      for (InputInstance *f : o->feeders)
        if (f == in.get()) want++;
    }
    if (want == in->full_outputs) continue;
    if (in->full_outputs == 0) {
      pause_input(in.get());
      in->full_outputs = want;
    } else if (want == 0) {
      in->full_outputs = 1;
      resume_input(in.get());
    } else {
      in->full_outputs = want;
    }
  }
}

}  // namespace devmesh
