/* devmesh plugin ABI: the only header a plugin includes. Pure C, no libuv or C++ types.
 *
 * A plugin .so exports one symbol, dm_plugin_entry, returning a versioned descriptor. Everything
 * the host offers comes through the dm_host_api table (append-only; check struct_size before
 * using an entry added in a later minor). Strings passed in are views: dm_str is not
 * NUL-terminated unless documented. */
#ifndef DEVMESH_PLUGIN_H
#define DEVMESH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DM_ABI_MAJOR 1 /* incompatible changes: the host refuses another major */
#define DM_ABI_MINOR 2 /* append-only additions: the host refuses a newer minor */
#define DM_ENTRY_SYMBOL "dm_plugin_entry"

#if defined(__GNUC__)
#define DM_EXPORT __attribute__((visibility("default")))
#define DM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DM_EXPORT
#define DM_PRINTF(f, a)
#endif

/* ---- strings and records ------------------------------------------------------------------ */

/* A view of bytes owned by a batch arena (or by the host); ptr may be NULL when len is 0. */
typedef struct dm_str {
  const char *ptr;
  size_t len;
} dm_str;

/* One meta entry (stored as meta_json by the stores). */
typedef struct dm_kv {
  dm_str key;
  dm_str value;
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
  dm_str tag;         /* the tag of the input that produced it */
  void *host_private; /* the host's; do not touch */
} dm_batch;

/* Filter verdicts, one per record, preset to DM_KEEP. */
enum { DM_KEEP = 0, DM_DROP = 1, DM_MODIFIED = 2 };

/* Output flush results. */
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

/* Acknowledgement stages (since ABI 1.1). */
enum {
  DM_ACK_DONE = 0,  /* every output finished the ticket's records (the only stage before 1.1) */
  DM_ACK_STORED = 1 /* with service.storage: the records are durable in the segment files per
                     * the sync policy and will be replayed after a crash; DONE follows later.
                     * Sent only to inputs whose descriptor has DM_ACK_STAGES, for every ticket,
                     * always before its DONE; its counts are not final. */
};

/* An input's acknowledgement: ticket `ticket` is done for every output it was routed to
 * (stage DM_ACK_DONE), or stored durably (DM_ACK_STORED). */
typedef struct dm_ack {
  uint64_t ticket;
  uint32_t delivered;     /* record deliveries that succeeded */
  uint32_t dead_lettered; /* record deliveries written to a dead-letter file instead */
  uint32_t dropped;       /* records dropped by filters or matching no output (before 1.2
                             also deliveries dropped from storage by when_full: drop_oldest,
                             now counted in failed) */
  uint32_t stage;         /* DM_ACK_DONE or DM_ACK_STORED (was reserved, zero, in 1.0) */
  /* Since ABI 1.2 (a plugin built for 1.0/1.1 reads only the fields above): */
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
  DM_OPT_MAP = 8       /* a mapping of string to string */
} dm_opt_type;

enum {
  DM_OPT_REQUIRED = 1u << 0, /* must be set */
  DM_OPT_SECRET = 1u << 1,   /* never printed (logs, --describe shows "secret") */
  DM_OPT_BOUNDED = 1u << 2   /* min/max apply (numbers, durations in ms, sizes in bytes) */
};

/* One declared option. The host validates the YAML against these before create(). */
typedef struct dm_option {
  const char *key;
  dm_opt_type type;
  uint32_t flags;             /* DM_OPT_* */
  const char *default_value;  /* textual default, parsed like YAML; NULL for none */
  double min, max;            /* with DM_OPT_BOUNDED */
  const char *const *allowed; /* NULL-terminated allowed values for strings, or NULL */
  const char *description;
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
typedef struct dm_hold dm_hold; /* since 1.2: see hold() */

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

/* The host's services. Append-only: a plugin built against minor N may use entries up to N. */
typedef struct dm_host_api {
  uint32_t struct_size; /* sizeof(dm_host_api) of the host */
  uint32_t abi_major;
  uint32_t abi_minor;

  /* Logging: one line on stderr with time, level and the instance name. */
  void (*log)(dm_instance *inst, dm_log_level level, const char *fmt, ...) DM_PRINTF(3, 4);

  /* Config values after validation and defaults. Absent (no value, no default): has() is 0. */
  int (*config_has)(const dm_config *cfg, const char *key);
  dm_str (*config_string)(const dm_config *cfg, const char *key); /* NUL-terminated */
  int64_t (*config_int)(const dm_config *cfg, const char *key);   /* INT, DURATION ms, SIZE B */
  double (*config_double)(const dm_config *cfg, const char *key);
  int (*config_bool)(const dm_config *cfg, const char *key);
  uint32_t (*config_count)(const dm_config *cfg, const char *key); /* LIST or MAP entries */
  dm_str (*config_item)(const dm_config *cfg, const char *key,
                        uint32_t i); /* LIST item or MAP value */
  dm_str (*config_map_key)(const dm_config *cfg, const char *key, uint32_t i); /* MAP key */

  /* Batches. batch_add returns a zeroed record (priority -1) valid until the next batch_add. */
  dm_batch *(*batch_new)(dm_instance *inst, uint32_t capacity_hint);
  dm_record *(*batch_add)(dm_batch *batch);
  dm_str (*arena_copy)(dm_batch *batch, const void *data, size_t len);
  void *(*arena_alloc)(dm_batch *batch, size_t len); /* 8-byte aligned, lives with the batch */
  /* Sets (or replaces) a meta entry; key and value are copied into the arena. */
  int (*meta_set)(dm_batch *batch, dm_record *rec, dm_str key, dm_str value);
  void (*batch_free)(dm_batch *batch); /* only for a batch not handed to submit/emit */

  /* Inputs: hand a batch to the engine, which owns it from then on. On DM_OK *ticket is set
   * and on_ack(ticket) follows once every output is done with it. DM_ERR_FULL (the input is
   * paused by backpressure): nothing was accepted and the batch is still the caller's. */
  int (*submit)(dm_instance *inst, dm_batch *batch, uint64_t *ticket);
  /* Filters: inject records of the filter's own (summaries); they have no ticket and enter the
   * chain after this filter. The engine owns the batch. */
  int (*emit)(dm_instance *inst, dm_batch *batch);

  /* Outputs: complete a DM_FLUSH_PENDING flush, exactly once, from any thread. */
  void (*flush_done)(dm_flush_token *token, dm_flush_status status, uint32_t retry_after_ms,
                     const char *reason);

  /* Loop services (call from the loop thread only). Freed handles never call back again. */
  dm_timer *(*timer_new)(dm_instance *inst, dm_timer_cb cb, void *arg);
  void (*timer_start)(dm_timer *t, uint64_t timeout_ms, uint64_t repeat_ms);
  void (*timer_stop)(dm_timer *t);
  void (*timer_free)(dm_timer *t);
  dm_watch *(*watch_new)(dm_instance *inst, int fd, dm_watch_cb cb, void *arg);
  int (*watch_set)(dm_watch *w, int events); /* DM_READABLE|DM_WRITABLE, 0 stops */
  void (*watch_free)(dm_watch *w);
  dm_async *(*async_new)(dm_instance *inst, dm_async_cb cb, void *arg);
  void (*async_send)(dm_async *a); /* any thread; wakes cb on the loop (coalesced) */
  void (*async_free)(dm_async *a);
  /* Runs work(arg) on the engine's thread pool, then done(arg) on the loop. */
  int (*queue_work)(dm_instance *inst, dm_work_cb work, dm_work_cb done, void *arg);

  /* HTTP serving on the engine's loop. Instances naming the same listen address share one
   * listener. path is exact, or a prefix when it ends in '*'. A path registered with another
   * method gets 405; no path 404. */
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

  /* Metrics, labelled with the instance. labels: extra Prometheus labels (k="v",...) or NULL. */
  dm_metric *(*metric_counter)(dm_instance *inst, const char *name, const char *help,
                               const char *labels);
  dm_metric *(*metric_gauge)(dm_instance *inst, const char *name, const char *help,
                             const char *labels);
  void (*metric_add)(dm_metric *m, double delta); /* any thread */
  void (*metric_set)(dm_metric *m, double value); /* any thread */

  /* Utilities. */
  uint64_t (*now_ns)(void);                                       /* realtime clock */
  void (*hash128)(const void *data, size_t len, uint8_t out[16]); /* XXH3-128 */
  const char *(*instance_name)(dm_instance *inst);                /* alias or name.N */

  /* Inputs: this input will submit nothing more (a bounded source reached its end). With
   * service.exit_when_done the engine exits once every input finished and all is acked. */
  void (*input_finished)(dm_instance *inst);

  /* The config's value syntax, for plugins that parse request parameters: "200ms", "5s",
   * "1m", "7d" to milliseconds; "64KiB", "10MB" to bytes. DM_OK or DM_ERR_INVALID. */
  int (*parse_duration_ms)(dm_str text, int64_t *ms);
  int (*parse_size)(dm_str text, int64_t *bytes);

  /* Streaming responses (Server-Sent Events, long-poll, long downloads); loop thread only.
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

  /* The engine as JSON, for /info-like endpoints: {"version":"0.1.0","abi":"1.0",
   * "instances":[{"name":..,"plugin":..,"kind":..,"version":..,"file":..}]}. NUL-terminated,
   * valid until the engine exits. */
  dm_str (*engine_info)(dm_instance *inst);

  /* Since ABI 1.1: 1 when service.storage is configured (inputs then get DM_ACK_STORED acks if
   * their descriptor has DM_ACK_STAGES), else 0. Callable from create() on. */
  int (*storage_enabled)(dm_instance *inst);

  /* Since ABI 1.2: holds, for filters whose emitted records stand in for records they drop
   * (a summary of collapsed repeats). Without a hold the dropped records' submit is done at
   * once, and an input would be told so (http: a 2xx, journald: the cursor moves) before the
   * summary that is their only trace is stored; a crash in between would lose them.
   * hold(): inside filter(), on the batch being filtered: takes one hold on the acknowledgement
   * of that batch's submit (its ticket is not done, nor STORED with service.storage, while a
   * hold remains). NULL when the batch has nothing to hold (records emitted by a filter without
   * holds, or replayed from storage). Take one per stand-in, not one per record.
   * hold_attach(): hands a hold to a batch of the filter's own before emit(): the hold is
   * released once every output finished that batch (with storage: STORED once its block is
   * durable). A dead-lettered or failed stand-in is reported so on the held ticket.
   * hold_release(): releases a hold that no emitted batch will carry.
   * A batch freed with batch_free() releases the holds attached to it. Loop thread only. */
  dm_hold *(*hold)(dm_instance *inst, dm_batch *batch);
  void (*hold_attach)(dm_batch *batch, dm_hold *hold);
  void (*hold_release)(dm_hold *hold);

  /* Since ABI 1.2: outputs report a result per record of a flush (a bulk sink whose receiver
   * answered per record). index is into the flushed batch; status DM_FLUSH_ERROR (the record
   * goes to the dead-letter file with this reason, or is counted failed when it cannot be kept)
   * or DM_FLUSH_RETRY (the record is retried on its own with backoff; reason is logged);
   * DM_FLUSH_OK changes nothing, other statuses count as DM_FLUSH_ERROR. The marks apply only
   * when the flush itself completes DM_FLUSH_OK (the other records are delivered); with any
   * other completion they are discarded. Callable from any thread, for a token whose flush has
   * not completed yet: from inside flush() or before its flush_done. reason is copied. */
  void (*flush_record_status)(dm_flush_token *token, uint32_t index, dm_flush_status status,
                              const char *reason);
} dm_host_api;

/* ---- the descriptor ----------------------------------------------------------------------- */

typedef enum dm_plugin_kind { DM_INPUT = 1, DM_FILTER = 2, DM_OUTPUT = 3 } dm_plugin_kind;

enum {
  DM_FLUSH_ON_WORKER = 1u << 0, /* outputs: flush() blocks; call it on worker threads */
  DM_ACK_STAGES = 1u << 1       /* inputs (ABI 1.1): also send DM_ACK_STORED acks */
};

/* Returned by dm_plugin_entry. Callbacks a kind does not use are NULL. The host reads only the
 * first struct_size bytes, so fields appended in later minors are seen as NULL by older hosts. */
typedef struct dm_plugin {
  uint32_t abi_major;   /* DM_ABI_MAJOR */
  uint32_t abi_minor;   /* DM_ABI_MINOR */
  uint32_t struct_size; /* sizeof(dm_plugin) */
  dm_plugin_kind kind;
  uint32_t flags; /* DM_FLUSH_ON_WORKER */
  const char *name;
  const char *version;
  const char *description;
  const dm_option *options;
  uint32_t option_count;

  /* All kinds. create() returns 0, or nonzero after logging why. */
  int (*create)(const dm_host_api *host, dm_instance *inst, const dm_config *cfg, void **state);
  int (*start)(void *state); /* optional; nonzero aborts the engine start */
  void (*stop)(void *state); /* optional; inputs stop producing, others release loop handles */
  void (*destroy)(void *state);

  /* Inputs. */
  void (*pause)(void *state); /* backpressure: stop producing until resume */
  void (*resume)(void *state);
  void (*on_ack)(void *state, const dm_ack *ack);

  /* Filters: set verdicts[i]; return nonzero on failure (the batch passes unchanged). */
  int (*filter)(void *state, dm_batch *batch, uint8_t *verdicts);

  /* Outputs. worker_init/fini run on each worker thread (DM_FLUSH_ON_WORKER), optional. */
  int (*worker_init)(void *state, uint32_t worker_index, void **worker_state);
  void (*worker_fini)(void *state, void *worker_state);
  dm_flush_status (*flush)(void *state, void *worker_state, const dm_batch *batch,
                           dm_flush_token *token, dm_flush_result *result);
  /* Optional: 0 when healthy, else nonzero with a reason written to buf. */
  int (*health)(void *state, char *buf, size_t cap);
} dm_plugin;

/* The one exported symbol of every plugin. */
typedef const dm_plugin *(*dm_plugin_entry_fn)(const dm_host_api *host);
DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *host);

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
