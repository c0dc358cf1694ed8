// C++ helpers for plugin authors, compiled into the plugin (header-only, nothing from the
// engine is linked). Wraps a class into a dm_plugin with every callback behind a noexcept guard.
#pragma once

#include <devmesh/plugin.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace devmesh {

inline std::string_view sv(dm_str s) {
  return s.len ? std::string_view(s.ptr, s.len) : std::string_view();
}
inline dm_str str(std::string_view s) {
  return dm_str{s.data(), s.size()};
}

// Runs f; an escaping exception is logged and turned into `fallback` (never crosses the ABI).
template <class F, class R>
R guarded(const dm_host_api *host, dm_instance *inst, R fallback, F &&f) noexcept {
  try {
    return f();
  } catch (const std::exception &e) {
    host->log(inst, DM_LOG_ERROR, "%s", e.what());
  } catch (...) {
    host->log(inst, DM_LOG_ERROR, "unknown exception");
  }
  return fallback;
}

// Owns a batch until it is handed to submit/emit; frees it otherwise.
class BatchOwner {
 public:
  BatchOwner(const dm_host_api *host, dm_batch *b) : host_(host), b_(b) {}
  BatchOwner(const BatchOwner &) = delete;
  BatchOwner &operator=(const BatchOwner &) = delete;
  ~BatchOwner() {
    if (b_) host_->batch_free(b_);
  }
  dm_batch *get() const { return b_; }
  dm_batch *release() {
    dm_batch *b = b_;
    b_ = nullptr;
    return b;
  }

 private:
  const dm_host_api *host_;
  dm_batch *b_;
};

// Acks may complete out of order; a checkpointing input advances only to the highest ticket
// such that it and every earlier ticket are done.
class TicketWatermark {
 public:
  // Marks `ticket` done; returns the new contiguous watermark (0 before the first ticket).
  uint64_t done(uint64_t ticket) {
    if (ticket != watermark_ + 1) {
      pending_.insert(ticket);
      return watermark_;
    }
    watermark_ = ticket;
    while (!pending_.empty() && *pending_.begin() == watermark_ + 1) {
      watermark_ = *pending_.begin();
      pending_.erase(pending_.begin());
    }
    return watermark_;
  }
  uint64_t watermark() const { return watermark_; }
  size_t out_of_order() const { return pending_.size(); }

 private:
  uint64_t watermark_ = 0;
  std::set<uint64_t> pending_;
};

// ---- configuration: problems and binding ----------------------------------------------------

// Thrown by ConfigProblems::refuse_if_any: create() then fails without another log line.
struct ConfigRefused : std::runtime_error {
  ConfigRefused() : std::runtime_error("configuration refused (problems reported)") {}
};

// Reports a plugin's config problems through host->config_error as it finds them, so one run
// lists them all, each at its option's place in the file; refuse_if_any() then throws.
class ConfigProblems {
 public:
  ConfigProblems(const dm_host_api *host, dm_instance *inst) : host_(host), inst_(inst) {}
  // key: the option, a dotted path into its value ("rules.2.pattern"), or nullptr for the
  // instance as a whole.
  void add(const std::string &key, const std::string &message) { add(key.c_str(), message); }
  void add(const char *key, const std::string &message) {
    host_->config_error(inst_, key, "%s", message.c_str());
    ++count_;
  }
  size_t count() const { return count_; }
  void refuse_if_any() const {
    if (count_) throw ConfigRefused();
  }

 private:
  const dm_host_api *host_;
  dm_instance *inst_;
  size_t count_ = 0;
};

// What config_bind writes for each option type (see dm_option in plugin.h).
template <dm_opt_type T>
struct BoundType;
template <>
struct BoundType<DM_OPT_STRING> {
  using type = const char *;
};
template <>
struct BoundType<DM_OPT_INT> {
  using type = int64_t;
};
template <>
struct BoundType<DM_OPT_DOUBLE> {
  using type = double;
};
template <>
struct BoundType<DM_OPT_BOOL> {
  using type = int;
};
template <>
struct BoundType<DM_OPT_DURATION> {
  using type = int64_t;
};
template <>
struct BoundType<DM_OPT_SIZE> {
  using type = int64_t;
};
template <>
struct BoundType<DM_OPT_LIST> {
  using type = dm_strings;
};
template <>
struct BoundType<DM_OPT_MAP> {
  using type = dm_strings;
};
template <>
struct BoundType<DM_OPT_PATH> {  // since 2.1: the path resolved against the config file
  using type = const char *;
};

// The offset of a config struct's member, for dm_option.offset with DM_OPT_BIND. The member
// must have a type config_bind writes; use Option<T> below to also match it to the option type.
template <class C, class M>
size_t bind(M C::*member) {
  static_assert(std::is_standard_layout_v<C>, "a bound config struct must be standard-layout");
  static_assert(std::is_same_v<M, const char *> || std::is_same_v<M, int64_t> ||
                    std::is_same_v<M, double> || std::is_same_v<M, int> ||
                    std::is_same_v<M, dm_strings>,
                "config_bind writes const char *, int64_t, double, int or dm_strings");
  // offsetof for a member pointer: the member's address in a (never constructed) C.
  alignas(C) static const unsigned char storage[sizeof(C)] = {};
  const C *c = reinterpret_cast<const C *>(storage);
  return static_cast<size_t>(reinterpret_cast<const unsigned char *>(&(c->*member)) - storage);
}

// An option bound to a member whose type matches the option's (a mismatch does not compile):
//   Option<DM_OPT_DOUBLE>("rate", &Cfg::rate, "records per second").value("10").bounded(0, 1e6)
// A bound STRING is a C string: it ends at the first NUL. Text a value may carry verbatim
// (a record's message) is read with config_string, whose dm_str keeps its length.
template <dm_opt_type T>
struct Option {
  dm_option o{};
  template <class C>
  Option(const char *key, typename BoundType<T>::type C::*member, const char *description) {
    o.key = key;
    o.type = T;
    o.flags = DM_OPT_BIND;
    o.description = description;
    o.offset = bind(member);
  }
  Option &value(const char *default_value) {
    o.default_value = default_value;
    return *this;
  }
  Option &bounded(double min, double max) {
    o.flags |= DM_OPT_BOUNDED;
    o.min = min;
    o.max = max;
    return *this;
  }
  Option &allowed(const char *const *values) {
    o.allowed = values;
    return *this;
  }
  Option &required() {
    o.flags |= DM_OPT_REQUIRED;
    return *this;
  }
  Option &secret() {
    o.flags |= DM_OPT_SECRET;
    return *this;
  }
  // Further DM_OPT_* flags, e.g. DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE for a state file.
  Option &with_flags(uint32_t flags) {
    o.flags |= flags;
    return *this;
  }
  operator dm_option() const { return o; }
};

// The bound config struct of an instance: C's own initial values, then every DM_OPT_BIND
// option's value or default.
template <class C>
C bound_config(const dm_host_api *host, const dm_config *cfg) {
  C c{};
  host->config_bind(cfg, &c);
  return c;
}

inline std::string_view sv_item(const dm_strings &s, uint32_t i) {
  return i < s.count ? sv(s.items[i]) : std::string_view();
}
inline std::string_view sv_key(const dm_strings &s, uint32_t i) {
  return i < s.count && s.keys ? sv(s.keys[i]) : std::string_view();
}

// ---- the adapter -------------------------------------------------------------------------------

// Builds a dm_plugin from a class T constructed as T(const dm_host_api*, dm_instance*, const
// dm_config*); it refuses its config with ConfigProblems::refuse_if_any (or any throw). Optional
// members: start, stop, pause, resume, on_ack, filter, worker_init, worker_fini, flush, health,
// with the C signatures minus state.
template <class T>
struct PluginAdapter {
  struct Box {
    const dm_host_api *host;
    dm_instance *inst;
    std::unique_ptr<T> obj;
  };

  static int create(const dm_host_api *h, dm_instance *i, const dm_config *c, void **s) noexcept {
    return guarded(h, i, 1, [&] {
      auto box = new Box{h, i, nullptr};
      try {
        box->obj = std::make_unique<T>(h, i, c);
      } catch (const ConfigRefused &) {  // its problems went to config_error
        delete box;
        return 1;
      } catch (const std::invalid_argument &e) {  // a config problem without its option's key
        h->config_error(i, nullptr, "%s", e.what());
        delete box;
        return 1;
      } catch (...) {
        delete box;
        throw;
      }
      *s = box;
      return 0;
    });
  }
  static int start(void *s) noexcept {
    auto b = static_cast<Box *>(s);
    return guarded(b->host, b->inst, 1, [&] { return b->obj->start(); });
  }
  static void stop(void *s) noexcept {
    auto b = static_cast<Box *>(s);
    guarded(b->host, b->inst, 0, [&] { return b->obj->stop(), 0; });
  }
  static void destroy(void *s) noexcept {
    auto b = static_cast<Box *>(s);
    guarded(b->host, b->inst, 0, [&] { return b->obj.reset(), 0; });
    delete b;
  }
  static void pause(void *s) noexcept {
    auto b = static_cast<Box *>(s);
    guarded(b->host, b->inst, 0, [&] { return b->obj->pause(), 0; });
  }
  static void resume(void *s) noexcept {
    auto b = static_cast<Box *>(s);
    guarded(b->host, b->inst, 0, [&] { return b->obj->resume(), 0; });
  }
  static void on_ack(void *s, const dm_ack *a) noexcept {
    auto b = static_cast<Box *>(s);
    guarded(b->host, b->inst, 0, [&] { return b->obj->on_ack(*a), 0; });
  }
  static int filter(void *s, dm_batch *batch, uint8_t *v) noexcept {
    auto b = static_cast<Box *>(s);
    return guarded(b->host, b->inst, 1, [&] { return b->obj->filter(batch, v); });
  }
  static int worker_init(void *s, uint32_t idx, void **ws) noexcept {
    auto b = static_cast<Box *>(s);
    return guarded(b->host, b->inst, 1, [&] { return b->obj->worker_init(idx, ws); });
  }
  static void worker_fini(void *s, void *ws) noexcept {
    auto b = static_cast<Box *>(s);
    guarded(b->host, b->inst, 0, [&] { return b->obj->worker_fini(ws), 0; });
  }
  static dm_flush_status flush(void *s, void *ws, const dm_batch *batch, dm_flush_token *tok,
                               dm_flush_result *res) noexcept {
    auto b = static_cast<Box *>(s);
    return guarded(b->host, b->inst, DM_FLUSH_RETRY,
                   [&] { return b->obj->flush(ws, batch, tok, res); });
  }
  static int health(void *s, char *buf, size_t cap) noexcept {
    auto b = static_cast<Box *>(s);
    return guarded(b->host, b->inst, 1, [&] { return b->obj->health(buf, cap); });
  }

  static dm_plugin describe(dm_plugin_kind kind, const char *name, const char *version,
                            const char *description, const dm_option *options, uint32_t count,
                            uint32_t flags = 0) {
    dm_plugin p;
    std::memset(&p, 0, sizeof p);
    p.abi_major = DM_ABI_MAJOR;
    p.abi_minor = DM_ABI_MINOR;
    p.struct_size = sizeof(dm_plugin);
    p.kind = kind;
    p.flags = flags;
    p.name = name;
    p.version = version;
    p.description = description;
    p.options = options;
    p.option_count = count;
    p.create = create;
    p.destroy = destroy;
    if constexpr (requires(T & t) { t.start(); }) p.start = start;
    if constexpr (requires(T & t) { t.stop(); }) p.stop = stop;
    if constexpr (requires(T & t) { t.pause(); }) p.pause = pause;
    if constexpr (requires(T & t) { t.resume(); }) p.resume = resume;
    if constexpr (requires(T & t, const dm_ack &a) { t.on_ack(a); }) p.on_ack = on_ack;
    if constexpr (requires(T & t, dm_batch * b, uint8_t * v) { t.filter(b, v); }) p.filter = filter;
    if constexpr (requires(T & t, void **w) { t.worker_init(0u, w); }) p.worker_init = worker_init;
    if constexpr (requires(T & t, void *w) { t.worker_fini(w); }) p.worker_fini = worker_fini;
    if constexpr (requires(T & t, void *w, const dm_batch *b, dm_flush_token *k,
                           dm_flush_result *r) { t.flush(w, b, k, r); })
      p.flush = flush;
    if constexpr (requires(T & t, char *c, size_t n) { t.health(c, n); }) p.health = health;
    return p;
  }
};

// Small config readers over the host table.
struct Config {
  const dm_host_api *host;
  const dm_config *cfg;
  bool has(const char *k) const { return host->config_has(cfg, k); }
  std::string string(const char *k) const { return std::string(sv(host->config_string(cfg, k))); }
  int64_t integer(const char *k) const { return host->config_int(cfg, k); }
  double number(const char *k) const { return host->config_double(cfg, k); }
  bool boolean(const char *k) const { return host->config_bool(cfg, k) != 0; }
  uint32_t count(const char *k) const { return host->config_count(cfg, k); }
  std::string item(const char *k, uint32_t i) const {
    return std::string(sv(host->config_item(cfg, k, i)));
  }
  std::string map_key(const char *k, uint32_t i) const {
    return std::string(sv(host->config_map_key(cfg, k, i)));
  }
};

}  // namespace devmesh

// Defines dm_plugin_entry for a PluginAdapter-described plugin.
#define DEVMESH_PLUGIN(...)                                                    \
  extern "C" DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *) { \
    static const dm_plugin desc = __VA_ARGS__;                                 \
    return &desc;                                                              \
  }
