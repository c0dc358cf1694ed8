/* devmesh plugin ABI 2.1: the only header a plugin includes. Pure C, no libuv or C++ types.
 *
 * A plugin .so exports one symbol, dm_plugin_entry, returning a versioned descriptor. Everything
 * the host offers comes through the dm_host_api table. Strings passed in are views: dm_str is
 * not NUL-terminated unless documented.
 *
 * Versions. A major changes the contract: the host refuses a plugin built for another major
 * (a 1.x plugin must be rebuilt against these headers). A minor only appends: new host entries
 * and descriptor fields go at the end of their struct, each marked "since 2.N"; a plugin that
 * uses an entry newer than 2.0 checks DM_HOST_HAS(host, entry) first, and the host reads only
 * the first struct_size bytes of a descriptor (later fields are NULL to an older host).
 *
 * Thread rules. Every host entry and callback below is marked:
 *   [loop] the engine's loop thread only. Plugin callbacks (create, start, stop, destroy,
 *          pause, resume, on_ack, filter, health, and flush without DM_FLUSH_ON_WORKER) and
 *          the callbacks of timers, watches, asyncs, queue_work's done and HTTP handlers run
 *          there. A debug build (DEVMESH_THREAD_CHECKS) aborts with the entry's name when a
 *          [loop] entry is called from another thread.
 *   [any]  any thread, including threads the plugin owns.
 *   [owner] any thread, by the one thread that owns the object at that moment (a batch is
 *          owned by whoever created it until it is handed to submit or emit; a flushed batch
 *          is read-only to the output while its flush is in progress).
 *
 * Lifetimes. Records and their strings live in their batch's arena: a view stays valid as long
 * as the batch does. A batch given to submit or emit belongs to the engine from then on. A
 * batch given to filter() lives until filter() returns. A batch given to flush() stays valid
 * and unchanged until the flush completes: until flush() returns for OK, RETRY, ERROR and SPLIT,
 * and until flush_done() returns under PENDING (an output may keep reading it on its own
 * threads until then, and must not touch it afterwards). A flushed batch is const: the only
 * host calls allowed on it are reads of its records and flush_record_status on its token. */
#ifndef DEVMESH_PLUGIN_H
#define DEVMESH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DM_ABI_MAJOR 2 /* incompatible changes: the host refuses another major */
#define DM_ABI_MINOR 1 /* append-only additions: the host refuses a newer minor */
#define DM_ENTRY_SYMBOL "dm_plugin_entry"

#if defined(__GNUC__)
#define DM_EXPORT __attribute__((visibility("default")))
#define DM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define DM_UNUSED __attribute__((unused))
#else
#define DM_UNUSED
#define DM_EXPORT
#define DM_PRINTF(f, a)
#endif

/* ---- strings and records ------------------------------------------------------------------ */

/* A view of bytes owned by a batch arena (or by the host); ptr may be NULL when len is 0. */
typedef struct dm_str {
  const char *ptr;
  size_t len;
} dm_str;

/* A meta value's type. The value's bytes: a STRING is the string itself (UTF-8, unescaped);
 * every other type is its JSON text, validated by meta_set, which the stores write into
 * meta_json verbatim: INT and FLOAT the number as written ("123", "-1.5e3"), BOOL "true" or
 * "false", NULL "null", JSON an object or array ({"a":1}). A record posted with
 * "meta": {"pid":123,"ok":true,"nested":{"a":1}} is stored as that same JSON. */
typedef enum dm_meta_type {
  DM_META_STRING = 0,
  DM_META_INT = 1,
  DM_META_FLOAT = 2,
  DM_META_BOOL = 3,
  DM_META_NULL = 4,
  DM_META_JSON = 5
} dm_meta_type;

/* One meta entry (stored as meta_json by the stores). */
typedef struct dm_kv {
  dm_str key;
  dm_str value;
  uint32_t type; /* dm_meta_type */
  uint32_t reserved;
} dm_kv;

/* The prototype's levels, in severity order; WARN and WARNING rank the same. */
typedef enum dm_level {
  DM_LEVEL_UNSET = 0,
  DM_LEVEL_DEBUG = 1,
  DM_LEVEL_INFO = 2,
  DM_LEVEL_WARN = 3,
  DM_LEVEL_WARNING = 4,
  DM_LEVEL_ERROR = 5,
  DM_LEVEL_CRITICAL = 6,
  DM_LEVEL_FATAL = 7
} dm_level;

/* A log record: fixed size, every string a view into its batch's arena. */
typedef struct dm_record {
  int64_t timestamp_ns; /* UTC nanoseconds since the epoch */
  uint8_t event_id[16]; /* identifies the event across retries and hops */
  uint8_t level;        /* dm_level */
  int8_t priority;      /* raw syslog priority 0..7, or -1 when unknown */
  uint16_t flags;       /* reserved, zero */
  uint32_t meta_count;  /* entries in meta */
  uint32_t meta_cap;    /* host-managed capacity of meta; do not touch */
  dm_str source;
  dm_str service;
  dm_str host;
  dm_str trace_id;
  dm_str span_id;
  dm_str event_type;
  dm_str error_code;
  dm_str message;
  dm_kv *meta; /* host-managed array; change it only through host->meta_set */
} dm_record;

/* A batch: records plus one arena that holds all their strings. Only records/count are public. */
typedef struct dm_batch {
  dm_record *records;
  uint32_t count;
  uint32_t reserved;
  dm_str tag;         /* the tag of the input that produced the records; every record of a
                         batch handed to filter() or flush() has this one tag */
  void *host_private; /* the host's; do not touch */
} dm_batch;

/* Filter verdicts, one per record, preset to DM_KEEP. */
enum { DM_KEEP = 0, DM_DROP = 1, DM_MODIFIED = 2 };

/* Output flush results, for the flush as a whole (returned, or given to flush_done) or for one
 * record (flush_record_status). */
typedef enum dm_flush_status {
  DM_FLUSH_OK = 0,     /* delivered */
  DM_FLUSH_RETRY = 1,  /* transient: the engine retries with backoff (retry_after honoured) */
  DM_FLUSH_ERROR = 2,  /* permanent: the batch goes to the dead-letter file with the reason */
  DM_FLUSH_SPLIT = 3,  /* too big or one bad record: the engine bisects and retries the halves */
  DM_FLUSH_PENDING = 4 /* completed later, exactly once, through host->flush_done */
} dm_flush_status;

/* Filled by a synchronous flush to explain RETRY / ERROR / SPLIT; zeroed by the host. */
typedef struct dm_flush_result {
  uint32_t retry_after_ms; /* 0: the engine's backoff decides */
  char reason[256];        /* NUL-terminated, recorded in logs and the dead-letter file */
} dm_flush_result;

/* Acknowledgement stages. */
enum {
  DM_ACK_DONE = 0,  /* every output finished the ticket's records */
  DM_ACK_STORED = 1 /* with service.storage: the records are durable in the segment files per
                     * the sync policy and will be replayed after a crash, or every output
                     * finished them before their fsync (nothing to replay; DONE comes at once).
                     * DONE follows later.
                     * Sent only to inputs whose descriptor has DM_ACK_STAGES, for every ticket,
                     * always before its DONE; its counts are not final. */
};

/* An input's acknowledgement: ticket `ticket` is done for every output it was routed to
 * (stage DM_ACK_DONE), or stored durably (DM_ACK_STORED). */
typedef struct dm_ack {
  uint64_t ticket;
  uint32_t delivered;        /* record deliveries that succeeded */
  uint32_t dead_lettered;    /* record deliveries written to a dead-letter file instead */
  uint32_t dropped;          /* records dropped by filters or matching no output */
  uint32_t stage;            /* DM_ACK_DONE or DM_ACK_STORED */
  uint32_t failed;           /* record deliveries that failed permanently and were NOT kept
                              * (no dead-letter file, or writing it failed; dropped from full
                              * storage; a stored block unreadable): lost unless the input can
                              * produce them again. Never counted in delivered. */
  uint32_t reserved;         /* zero */
  const char *failed_reason; /* with failed > 0: the first failure's reason, NUL-terminated,
                              * valid during on_ack only; else NULL */
} dm_ack;

/* ---- configuration schema ----------------------------------------------------------------- */

typedef enum dm_opt_type {
  DM_OPT_STRING = 1,
  DM_OPT_INT = 2,
  DM_OPT_DOUBLE = 3,
  DM_OPT_BOOL = 4,
  DM_OPT_DURATION = 5, /* "200ms", "5s", "1m", "7d"; read as milliseconds */
  DM_OPT_SIZE = 6,     /* "64KiB", "10MB", 4096; read as bytes */
  DM_OPT_LIST = 7,     /* a sequence of strings (a scalar is a one-item list) */
  DM_OPT_MAP = 8,      /* a mapping of string to string */
  /* since 2.1: a filesystem path (a string). A relative value is relative to the directory of
   * the configuration file it was written in; config_get_string and config_bind give the
   * resolved path. */
  DM_OPT_PATH = 9
} dm_opt_type;

enum {
  DM_OPT_REQUIRED = 1u << 0, /* must be set */
  DM_OPT_SECRET = 1u << 1,   /* never printed (logs, --describe shows "secret") */
  DM_OPT_BOUNDED = 1u << 2,  /* min/max apply (numbers, durations in ms, sizes in bytes) */
  DM_OPT_BIND = 1u << 3,     /* config_bind writes the validated value at `offset` */
  /* since 2.1, the engine's checks (at start, at a reload and in --dry-run) */
  DM_OPT_MAKES_DIR = 1u << 4,    /* PATH: a directory the instance writes; the engine creates it
                                  * (mode 0700) when missing, or names the option and path */
  DM_OPT_MAKES_PARENT = 1u << 5, /* PATH: a file the instance writes; its directory likewise */
  DM_OPT_EXCLUSIVE = 1u << 6,    /* no two instances may give this key the same value (one
                                  * SQLite file, one dead-letter file per writer) */
  DM_OPT_LISTEN = 1u << 7,       /* STRING: an address the instance serves on; checked for
                                  * syntax and that it can be bound */
  DM_OPT_ROUTE = 1u << 8         /* STRING: a path served on the instance's DM_OPT_LISTEN
                                  * address: two instances may not serve one address and path */
};

/* A LIST or MAP option's value as config_bind writes it: count items (and, for a MAP, their
 * keys), NUL-terminated, valid until destroy(). */
typedef struct dm_strings {
  const dm_str *items;
  const dm_str *keys; /* MAP keys; NULL for a LIST */
  uint32_t count;
  uint32_t reserved;
} dm_strings;

/* One declared option. The host validates the YAML against these before create().
 * Declarative binding: with DM_OPT_BIND, config_bind(cfg, dst) writes the validated value (or
 * the default) at dst + offset, as: STRING `const char *` (NUL-terminated, valid until
 * destroy()), INT `int64_t`, DOUBLE `double`, BOOL `int` (0 or 1), DURATION `int64_t`
 * milliseconds, SIZE `int64_t` bytes, LIST and MAP `dm_strings`. An absent option with no
 * default leaves its field as it was. C: offsetof(struct my_config, field); C++:
 * devmesh::bind(&Config::field) in plugin.hpp. */
typedef struct dm_option {
  const char *key;
  dm_opt_type type;
  uint32_t flags;             /* DM_OPT_* */
  const char *default_value;  /* textual default, parsed like YAML; NULL for none */
  double min, max;            /* with DM_OPT_BOUNDED */
  const char *const *allowed; /* NULL-terminated allowed values for strings, or NULL */
  const char *description;
  size_t offset; /* with DM_OPT_BIND: where config_bind writes the value */
} dm_option;

typedef struct dm_config dm_config; /* validated values of one plugin instance */

/* ---- host handles ------------------------------------------------------------------------- */

typedef struct dm_instance dm_instance; /* the host's handle for one plugin instance */
typedef struct dm_timer dm_timer;
typedef struct dm_watch dm_watch;
typedef struct dm_async dm_async;
typedef struct dm_metric dm_metric;
typedef struct dm_flush_token dm_flush_token;
typedef struct dm_http_request dm_http_request;
typedef struct dm_hold dm_hold; /* see hold() */

typedef enum dm_log_level {
  DM_LOG_ERROR = 0,
  DM_LOG_WARN = 1,
  DM_LOG_INFO = 2,
  DM_LOG_DEBUG = 3
} dm_log_level;

enum { DM_READABLE = 1, DM_WRITABLE = 2 };

/* Return codes of host calls. */
enum { DM_OK = 0, DM_ERR = -1, DM_ERR_FULL = -2, DM_ERR_INVALID = -3 };

typedef void (*dm_timer_cb)(void *arg);
typedef void (*dm_watch_cb)(void *arg, int events);
typedef void (*dm_async_cb)(void *arg);
typedef void (*dm_work_cb)(void *arg);
typedef void (*dm_http_handler)(void *arg, dm_http_request *req);

/* since 2.1: TLS on a listen address (http_tls). Paths as DM_OPT_PATH values (resolved). */
typedef struct dm_tls_config {
  const char *cert;        /* PEM certificate chain; NULL or "" serves plain HTTP */
  const char *key;         /* PEM private key of cert */
  const char *ca;          /* PEM CA bundle: client certificates are then required and verified
                            * against it (mutual TLS); NULL for none */
  const char *min_version; /* "1.2" (NULL means "1.2") or "1.3" */
} dm_tls_config;

/* The four standard TLS options of a listening plugin, bound (config_bind) into a
 * dm_tls_config member of the plugin's config struct:
 *   static const dm_option opts[] = { ..., DM_TLS_OPTIONS(struct my_config, tls) };
 * Their keys are tls.cert, tls.key, tls.ca and tls.min_version, as in Fluent Bit's tls.*. */
/* (kept one option per line rather than clang-format's one field per line) */
/* clang-format off */
#define DM_TLS_OPTIONS(type, member)                                                            \
  {"tls.cert", DM_OPT_PATH, DM_OPT_BIND, NULL, 0, 0, NULL,                                      \
   "serve TLS with this PEM certificate chain (with tls.key)", offsetof(type, member.cert)},   \
      {"tls.key", DM_OPT_PATH, DM_OPT_BIND | DM_OPT_SECRET, NULL, 0, 0, NULL,                   \
       "PEM private key of tls.cert", offsetof(type, member.key)},                              \
      {"tls.ca", DM_OPT_PATH, DM_OPT_BIND, NULL, 0, 0, NULL,                                    \
       "PEM CA bundle: clients must present a certificate it signed (mutual TLS)",              \
       offsetof(type, member.ca)},                                                              \
      {"tls.min_version", DM_OPT_STRING, DM_OPT_BIND, "1.2", 0, 0, dm_tls_versions,             \
       "lowest TLS version accepted", offsetof(type, member.min_version)}
/* clang-format on */
static const char *const dm_tls_versions[] DM_UNUSED = {"1.2", "1.3", NULL};

/* The host's services. Every entry here is since 2.0; entries appended in a later minor say
 * since which one (check DM_HOST_HAS before calling them). */
typedef struct dm_host_api {
  uint32_t struct_size; /* sizeof(dm_host_api) of the host */
  uint32_t abi_major;
  uint32_t abi_minor;

  /* [any] Logging: one line on stderr with time, level and the instance name. */
  void (*log)(dm_instance *inst, dm_log_level level, const char *fmt, ...) DM_PRINTF(3, 4);

  /* [any] Config values after validation and defaults. Absent (no value, no default): has() is
   * 0. The dm_config lives until destroy(). */
  int (*config_has)(const dm_config *cfg, const char *key);
  dm_str (*config_string)(const dm_config *cfg, const char *key); /* NUL-terminated */
  int64_t (*config_int)(const dm_config *cfg, const char *key);   /* INT, DURATION ms, SIZE B */
  double (*config_double)(const dm_config *cfg, const char *key);
  int (*config_bool)(const dm_config *cfg, const char *key);
  uint32_t (*config_count)(const dm_config *cfg, const char *key); /* LIST or MAP entries */
  dm_str (*config_item)(const dm_config *cfg, const char *key,
                        uint32_t i); /* LIST item or MAP value */
  dm_str (*config_map_key)(const dm_config *cfg, const char *key, uint32_t i); /* MAP key */

  /* [owner] Batches. batch_new [any] makes a batch owned by the calling thread. batch_add
   * returns a zeroed record (priority -1) valid until the next batch_add. */
  dm_batch *(*batch_new)(dm_instance *inst, uint32_t capacity_hint);
  dm_record *(*batch_add)(dm_batch *batch);
  dm_str (*arena_copy)(dm_batch *batch, const void *data, size_t len);
  void *(*arena_alloc)(dm_batch *batch, size_t len); /* 8-byte aligned, lives with the batch */
  /* Sets (or replaces) a meta entry of type `type` (dm_meta_type); key and value are copied
   * into the arena. DM_ERR_INVALID (nothing set) when the value is not valid for its type
   * (see dm_meta_type) or the type is unknown. */
  int (*meta_set)(dm_batch *batch, dm_record *rec, dm_str key, dm_str value, uint32_t type);
  void (*batch_free)(dm_batch *batch); /* only for a batch not handed to submit/emit */

  /* [any] Inputs: hand a batch to the engine, which owns it from then on. On DM_OK *ticket is
   * set and on_ack(ticket) follows, on the loop, once every output is done with it.
   * DM_ERR_FULL (the input is paused by backpressure, between its pause() and resume()):
   * nothing was accepted and the batch is still the caller's. From a thread of the plugin's
   * own the semantics are the same: the batch is queued to the loop (the ticket is set at
   * once, in submit order), and DM_ERR_FULL comes as soon as the loop has called pause(). A
   * thread that got DM_ERR_FULL waits for resume() (e.g. on a condition variable the plugin
   * signals from resume()) before submitting again; an input without pause()/resume() gets
   * DM_ERR_FULL all the same and retries on its own. on_ack(ticket) runs on the loop and may
   * come before submit has returned that ticket to the thread: an input's ledger takes an ack
   * for a ticket it has not recorded yet. Once the engine begins to stop (before it calls
   * stop(), which joins the plugin's threads) a submit from a thread gets DM_ERR and the batch
   * is still the caller's; everything accepted before is routed and acknowledged. */
  int (*submit)(dm_instance *inst, dm_batch *batch, uint64_t *ticket);
  /* [loop] Filters: inject records of the filter's own (summaries); they have no ticket and
   * enter the chain after this filter. The engine owns the batch. */
  int (*emit)(dm_instance *inst, dm_batch *batch);

  /* [any] Outputs: complete a DM_FLUSH_PENDING flush, exactly once. */
  void (*flush_done)(dm_flush_token *token, dm_flush_status status, uint32_t retry_after_ms,
                     const char *reason);

  /* [loop] Loop services. Freed handles never call back again. */
  dm_timer *(*timer_new)(dm_instance *inst, dm_timer_cb cb, void *arg);
  void (*timer_start)(dm_timer *t, uint64_t timeout_ms, uint64_t repeat_ms);
  void (*timer_stop)(dm_timer *t);
  void (*timer_free)(dm_timer *t);
  dm_watch *(*watch_new)(dm_instance *inst, int fd, dm_watch_cb cb, void *arg);
  int (*watch_set)(dm_watch *w, int events); /* DM_READABLE|DM_WRITABLE, 0 stops */
  void (*watch_free)(dm_watch *w);
  dm_async *(*async_new)(dm_instance *inst, dm_async_cb cb, void *arg);
  void (*async_send)(dm_async *a); /* [any]: wakes cb on the loop (coalesced) */
  void (*async_free)(dm_async *a);
  /* [loop] Runs work(arg) on the engine's thread pool, then done(arg) on the loop. */
  int (*queue_work)(dm_instance *inst, dm_work_cb work, dm_work_cb done, void *arg);

  /* [loop] HTTP serving on the engine's loop. Instances naming the same listen address share
   * one listener. path is exact, or a prefix when it ends in '*'. A path registered with another
   * method gets 405; no path 404. A request handle lives until its reply (or its stream's
   * on_close); handlers and the calls below run on the loop. */
  int (*http_route)(dm_instance *inst, const char *listen, const char *method, const char *path,
                    dm_http_handler handler, void *arg);
  dm_str (*http_method)(dm_http_request *req);
  dm_str (*http_path)(dm_http_request *req);                     /* without the query string */
  dm_str (*http_query)(dm_http_request *req);                    /* after '?', raw */
  dm_str (*http_header)(dm_http_request *req, const char *name); /* len 0 when absent */
  dm_str (*http_body)(dm_http_request *req);
  void (*http_add_header)(dm_http_request *req, const char *name, const char *value);
  /* Completes the request (once). Safe after the client went away: then it only frees. */
  void (*http_reply)(dm_http_request *req, int status, const char *content_type, const char *body,
                     size_t len);

  /* Metrics, labelled with the instance. labels: extra Prometheus labels (k="v",...) or NULL.
   * Registering is [loop]; metric_add and metric_set are [any]. */
  dm_metric *(*metric_counter)(dm_instance *inst, const char *name, const char *help,
                               const char *labels);
  dm_metric *(*metric_gauge)(dm_instance *inst, const char *name, const char *help,
                             const char *labels);
  void (*metric_add)(dm_metric *m, double delta);
  void (*metric_set)(dm_metric *m, double value);

  /* [any] Utilities. */
  uint64_t (*now_ns)(void);                                       /* realtime clock */
  void (*hash128)(const void *data, size_t len, uint8_t out[16]); /* XXH3-128 */
  const char *(*instance_name)(dm_instance *inst);                /* alias or name.N */

  /* [loop] Inputs: this input will submit nothing more (a bounded source reached its end).
   * With service.exit_when_done the engine exits once every input finished and all is acked. */
  void (*input_finished)(dm_instance *inst);

  /* [any] The config's value syntax, for plugins that parse request parameters: "200ms", "5s",
   * "1m", "7d" to milliseconds; "64KiB", "10MB" to bytes. DM_OK or DM_ERR_INVALID. */
  int (*parse_duration_ms)(dm_str text, int64_t *ms);
  int (*parse_size)(dm_str text, int64_t *bytes);

  /* [loop] Streaming responses (Server-Sent Events, long-poll, long downloads).
   * stream_start replaces http_reply: it sends the status and headers (added with
   * http_add_header before it); HTTP/1.1 200 is chunked and keeps its connection. stream_write
   * queues a copy of data and never blocks: DM_ERR_FULL (nothing queued) when the bytes not yet
   * written plus len would pass max_buffered (0 = 1 MiB; a write into an empty queue is always
   * taken), DM_ERR once the client is gone or the stream ended. stream_end finishes the response
   * after the queue (idempotent). on_close(arg) comes exactly once, on the loop and never from
   * inside an http_stream_* call: after stream_end's data is written, when the client goes away,
   * or at the engine's stop before any plugin is stopped; writes during it get DM_ERR, after it
   * the request handle is invalid. If stream_start does not return DM_OK the request is finished
   * as by http_reply (500 for DM_ERR_INVALID: on_close NULL, status not 200..999 or 204/304;
   * DM_ERR: client or server already gone) and on_close never comes. */
  int (*http_stream_start)(dm_http_request *req, int status, const char *content_type,
                           size_t max_buffered, void (*on_close)(void *arg), void *arg);
  int (*http_stream_write)(dm_http_request *req, const void *data, size_t len);
  void (*http_stream_end)(dm_http_request *req);

  /* [any] The engine as JSON, for /info-like endpoints: {"version":"0.1.0","abi":"2.0",
   * "instances":[{"name":..,"plugin":..,"kind":..,"version":..,"file":..}]}. NUL-terminated,
   * valid until the engine exits. */
  dm_str (*engine_info)(dm_instance *inst);

  /* [any] 1 when service.storage is configured (inputs then get DM_ACK_STORED acks if their
   * descriptor has DM_ACK_STAGES), else 0. Callable from create() on. */
  int (*storage_enabled)(dm_instance *inst);

  /* [loop] Holds, for filters whose emitted records stand in for records they drop (a summary
   * of collapsed repeats). Without a hold the dropped records' submit is done at once, and an
   * input would be told so (http: a 2xx, journald: the cursor moves) before the summary that is
   * their only trace is stored; a crash in between would lose them.
   * hold(): inside filter(), on the batch being filtered: takes one hold on the acknowledgement
   * of that batch's submit (its ticket is not done, nor STORED with service.storage, while a
   * hold remains). NULL when the batch has nothing to hold (records emitted by a filter without
   * holds, or replayed from storage). Take one per stand-in, not one per record.
   * hold_attach(): hands a hold to a batch of the filter's own before emit(): the hold is
   * released once every output finished that batch (with storage: STORED once its block is
   * durable). A dead-lettered or failed stand-in is reported so on the held ticket.
   * hold_release(): releases a hold that no emitted batch will carry.
   * A batch freed with batch_free() releases the holds attached to it. */
  dm_hold *(*hold)(dm_instance *inst, dm_batch *batch);
  void (*hold_attach)(dm_batch *batch, dm_hold *hold);
  void (*hold_release)(dm_hold *hold);

  /* [any] Per-record results: an output reports a result per record of a flush (a bulk sink
   * whose receiver answered per record, as filters give verdicts). One bad record in 10,000
   * then costs one dead-letter entry and one flush call, not a bisection (SPLIT stays for "too
   * big"). index is into the flushed batch; status DM_FLUSH_ERROR (the record goes to the
   * dead-letter file with this reason, or is counted failed when it cannot be kept) or
   * DM_FLUSH_RETRY (the record is retried on its own with backoff; reason is logged);
   * DM_FLUSH_OK changes nothing, other statuses count as DM_FLUSH_ERROR. The marks apply only
   * when the flush itself completes DM_FLUSH_OK (the other records are delivered); with any
   * other completion they are discarded. For a token whose flush has not completed yet: from
   * inside flush() or before its flush_done. reason is copied. */
  void (*flush_record_status)(dm_flush_token *token, uint32_t index, dm_flush_status status,
                              const char *reason);

  /* [loop] Config problems, from create(): reports a problem with option `key` (a dotted path
   * into the option's value is fine, e.g. "rules.2.pattern"; NULL for the instance as a whole).
   * The engine prints it as FILE:LINE:COL: pipeline.filters[1].rules: message, with the
   * option's place in the pipeline file, and refuses to start; --dry-run lists every problem
   * of every plugin. Report every problem found, then return nonzero from create(). */
  void (*config_error)(dm_instance *inst, const char *key, const char *fmt, ...) DM_PRINTF(3, 4);
  /* [any] Declarative binding: writes every DM_OPT_BIND option's validated value (or its
   * default) into dst at its offset (see dm_option). DM_OK, or DM_ERR_INVALID without cfg or
   * dst. */
  int (*config_bind)(const dm_config *cfg, void *dst);

  /* since 2.1 */
  /* [loop] Serve `listen` over TLS (see dm_tls_config); call before http_route on that
   * address, from start(). Instances sharing an address must give the same settings. The files
   * are read now and again at every reload (a renewed certificate is picked up without a
   * restart). DM_OK; DM_ERR after logging why (a file that cannot be read, a key that does not
   * match, settings that differ from another instance's on the same address). */
  int (*http_tls)(dm_instance *inst, const char *listen, const dm_tls_config *tls);
} dm_host_api;

/* 1 when the host's table has `entry` (an entry appended in a minor newer than the host's is
 * absent): check it before calling an entry marked "since 2.N" with N above 0. */
#define DM_HOST_HAS(host, entry)                                                  \
  ((host)->struct_size >= offsetof(dm_host_api, entry) + sizeof((host)->entry) && \
   (host)->entry != NULL)

/* ---- the descriptor ----------------------------------------------------------------------- */

typedef enum dm_plugin_kind { DM_INPUT = 1, DM_FILTER = 2, DM_OUTPUT = 3 } dm_plugin_kind;

enum {
  DM_FLUSH_ON_WORKER = 1u << 0, /* outputs: flush() blocks; call it on worker threads */
  DM_ACK_STAGES = 1u << 1       /* inputs: also send DM_ACK_STORED acks */
};

/* Returned by dm_plugin_entry. Callbacks a kind does not use are NULL. The host reads only the
 * first struct_size bytes, so fields appended in later minors are seen as NULL by older hosts. */
typedef struct dm_plugin {
  uint32_t abi_major;   /* DM_ABI_MAJOR */
  uint32_t abi_minor;   /* DM_ABI_MINOR */
  uint32_t struct_size; /* sizeof(dm_plugin) */
  dm_plugin_kind kind;
  uint32_t flags; /* DM_FLUSH_ON_WORKER, DM_ACK_STAGES */
  const char *name;
  const char *version;
  const char *description;
  const dm_option *options;
  uint32_t option_count;

  /* [loop] All kinds. create() returns 0, or nonzero after reporting why (config_error for a
   * problem with an option, log otherwise). It runs for --dry-run too: it must not start
   * threads, open listeners or write anything; start() does. */
  int (*create)(const dm_host_api *host, dm_instance *inst, const dm_config *cfg, void **state);
  int (*start)(void *state);    /* [loop] optional; nonzero aborts the engine start */
  void (*stop)(void *state);    /* [loop] optional; inputs stop producing, others release handles;
                                 * a plugin's own threads are joined here (no submit after it) */
  void (*destroy)(void *state); /* [loop] */

  /* [loop] Inputs. pause: backpressure, stop producing until resume (submit from any thread
   * returns DM_ERR_FULL meanwhile). on_ack: see dm_ack; acks of one input may come out of
   * order (TicketWatermark in plugin.hpp orders them). */
  void (*pause)(void *state);
  void (*resume)(void *state);
  void (*on_ack)(void *state, const dm_ack *ack);

  /* [loop] Filters: set verdicts[i]; return nonzero on failure (the batch passes unchanged). */
  int (*filter)(void *state, dm_batch *batch, uint8_t *verdicts);

  /* Outputs. With DM_FLUSH_ON_WORKER, worker_init/fini (optional) and flush run on the
   * engine's worker threads, each worker with its worker_state; without it flush runs on the
   * loop and must not block. flush gets a batch of records of one tag (batch->tag). */
  int (*worker_init)(void *state, uint32_t worker_index, void **worker_state);
  void (*worker_fini)(void *state, void *worker_state);
  dm_flush_status (*flush)(void *state, void *worker_state, const dm_batch *batch,
                           dm_flush_token *token, dm_flush_result *result);
  /* [loop] Optional, all kinds: 0 when healthy, else nonzero with a reason written to buf.
   * /health shows an unhealthy output as "unhealthy" (503) and an unhealthy input as
   * "degraded" (200: e.g. journald with no journal to read, which a restart does not fix). */
  int (*health)(void *state, char *buf, size_t cap);
} dm_plugin;

/* The one exported symbol of every plugin. */
typedef const dm_plugin *(*dm_plugin_entry_fn)(const dm_host_api *host);
DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *host);

/* ---- pinned layout ------------------------------------------------------------------------ */

/* The public structs' sizes and offsets on LP64 (x86-64, aarch64), checked wherever the header
 * is compiled: a change that moves a field breaks the build instead of every plugin. */
#if defined(__cplusplus)
#define DM_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define DM_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
#if UINTPTR_MAX == 0xffffffffffffffffu
DM_STATIC_ASSERT(sizeof(dm_str) == 16, "dm_str");
DM_STATIC_ASSERT(sizeof(dm_kv) == 40 && offsetof(dm_kv, value) == 16 && offsetof(dm_kv, type) == 32,
                 "dm_kv");
DM_STATIC_ASSERT(sizeof(dm_record) == 176, "dm_record");
DM_STATIC_ASSERT(offsetof(dm_record, event_id) == 8 && offsetof(dm_record, level) == 24 &&
                     offsetof(dm_record, priority) == 25 && offsetof(dm_record, flags) == 26 &&
                     offsetof(dm_record, meta_count) == 28 && offsetof(dm_record, meta_cap) == 32 &&
                     offsetof(dm_record, source) == 40 && offsetof(dm_record, service) == 56 &&
                     offsetof(dm_record, host) == 72 && offsetof(dm_record, trace_id) == 88 &&
                     offsetof(dm_record, span_id) == 104 &&
                     offsetof(dm_record, event_type) == 120 &&
                     offsetof(dm_record, error_code) == 136 &&
                     offsetof(dm_record, message) == 152 && offsetof(dm_record, meta) == 168,
                 "dm_record fields");
DM_STATIC_ASSERT(sizeof(dm_batch) == 40 && offsetof(dm_batch, count) == 8 &&
                     offsetof(dm_batch, tag) == 16 && offsetof(dm_batch, host_private) == 32,
                 "dm_batch");
DM_STATIC_ASSERT(sizeof(dm_flush_result) == 260 && offsetof(dm_flush_result, reason) == 4,
                 "dm_flush_result");
DM_STATIC_ASSERT(sizeof(dm_ack) == 40 && offsetof(dm_ack, delivered) == 8 &&
                     offsetof(dm_ack, dead_lettered) == 12 && offsetof(dm_ack, dropped) == 16 &&
                     offsetof(dm_ack, stage) == 20 && offsetof(dm_ack, failed) == 24 &&
                     offsetof(dm_ack, failed_reason) == 32,
                 "dm_ack");
DM_STATIC_ASSERT(sizeof(dm_strings) == 24 && offsetof(dm_strings, count) == 16, "dm_strings");
DM_STATIC_ASSERT(sizeof(dm_option) == 64 && offsetof(dm_option, type) == 8 &&
                     offsetof(dm_option, flags) == 12 && offsetof(dm_option, default_value) == 16 &&
                     offsetof(dm_option, min) == 24 && offsetof(dm_option, max) == 32 &&
                     offsetof(dm_option, allowed) == 40 && offsetof(dm_option, description) == 48 &&
                     offsetof(dm_option, offset) == 56,
                 "dm_option");
DM_STATIC_ASSERT(offsetof(dm_host_api, log) == 16 && offsetof(dm_host_api, meta_set) == 120 &&
                     offsetof(dm_host_api, submit) == 136 &&
                     offsetof(dm_host_api, flush_record_status) == 456 &&
                     offsetof(dm_host_api, config_error) == 464 &&
                     offsetof(dm_host_api, config_bind) == 472 &&
                     offsetof(dm_host_api, http_tls) == 480 && sizeof(dm_host_api) == 488,
                 "dm_host_api: entries are only appended");
DM_STATIC_ASSERT(offsetof(dm_plugin, name) == 24 && offsetof(dm_plugin, options) == 48 &&
                     offsetof(dm_plugin, create) == 64 && offsetof(dm_plugin, on_ack) == 112 &&
                     offsetof(dm_plugin, flush) == 144 && sizeof(dm_plugin) == 160,
                 "dm_plugin: fields are only appended");
#endif

/* ---- small helpers ------------------------------------------------------------------------ */

static inline const char *dm_level_name(int level) {
  static const char *const names[] = {"",        "DEBUG", "INFO",     "WARN",
                                      "WARNING", "ERROR", "CRITICAL", "FATAL"};
  return (level >= 0 && level <= 7) ? names[level] : "";
}

/* Severity rank: WARN and WARNING are equal. */
static inline int dm_level_rank(int level) {
  return level >= DM_LEVEL_WARNING ? level - 1 : level;
}

#ifdef __cplusplus
}
#endif

#endif /* DEVMESH_PLUGIN_H */
