/* example_redact: an out-of-tree devmesh filter in plain C, built with nothing but the installed
 * SDK (<devmesh/plugin.h>). It masks the value after a pattern ("password=hunter2" becomes
 * "password=***", meta redacted=true) and can drop every record of one service. It shows the
 * filter contract: verdicts per record, new strings in the batch's arena, typed meta, metrics,
 * and a config problem reported against its option. */
#define _GNU_SOURCE /* memmem */
#include <devmesh/plugin.h>

#include <stdlib.h>
#include <string.h>

static const dm_option options[] = {
    {.key = "pattern",
     .type = DM_OPT_STRING,
     .default_value = "password=",
     .description = "text after which a value is masked, up to the next whitespace"},
    {.key = "drop_service",
     .type = DM_OPT_STRING,
     .description = "drop every record of this service"},
};

static const char mask[] = "***";
#define MASK_LEN (sizeof mask - 1)

/* Everything an instance needs; two instances share nothing. */
typedef struct redact {
  const dm_host_api *host;
  dm_instance *inst;
  char *pattern;
  size_t pattern_len;
  char *drop_service; /* NULL: drop nothing */
  size_t drop_service_len;
  dm_metric *masked, *dropped;
} redact;

static char *dup_str(dm_str s) {
  char *p = malloc(s.len + 1);
  if (p) {
    if (s.len) memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
  }
  return p;
}

static void destroy(void *state) {
  redact *r = state;
  free(r->pattern);
  free(r->drop_service);
  free(r);
}

static int create(const dm_host_api *host, dm_instance *inst, const dm_config *cfg, void **state) {
  redact *r = calloc(1, sizeof *r);
  if (!r) return 1;
  r->host = host;
  r->inst = inst;
  dm_str pattern = host->config_string(cfg, "pattern");
  if (pattern.len == 0) {
    /* Printed as FILE:LINE:COL of the option, like the engine's own config errors. */
    host->config_error(inst, "pattern", "must not be empty");
    destroy(r);
    return 1;
  }
  r->pattern = dup_str(pattern);
  r->pattern_len = pattern.len;
  if (host->config_has(cfg, "drop_service")) {
    dm_str s = host->config_string(cfg, "drop_service");
    r->drop_service = dup_str(s);
    r->drop_service_len = s.len;
  }
  if (!r->pattern || (host->config_has(cfg, "drop_service") && !r->drop_service)) {
    destroy(r);
    return 1;
  }
  /* Every drop is counted: the engine counts the records a filter drops, this says why. */
  r->masked = host->metric_counter(inst, "example_redact_records_masked_total",
                                   "records whose message had a value masked", NULL);
  r->dropped = host->metric_counter(inst, "example_redact_records_dropped_total",
                                    "records dropped for their service (drop_service)", NULL);
  *state = r;
  return 0;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* End of the value that starts at p (the first whitespace at or after it). */
static const char *value_end(const char *p, const char *end) {
  while (p < end && !is_space(*p)) ++p;
  return p;
}

/* Masks every value after the pattern in the record's message; returns 1 when it changed. */
static int redact_message(redact *r, dm_batch *batch, dm_record *rec, int *failed) {
  const char *msg = rec->message.ptr, *end = msg + rec->message.len;
  const char *p = msg, *hit;
  size_t hits = 0;
  int changes = 0;
  /* First pass: is there anything to mask, and how long can the result be? */
  while (p < end && (hit = memmem(p, (size_t)(end - p), r->pattern, r->pattern_len))) {
    const char *v = hit + r->pattern_len, *ve = value_end(v, end);
    ++hits;
    if ((size_t)(ve - v) != MASK_LEN || memcmp(v, mask, MASK_LEN) != 0) changes = 1;
    p = ve;
  }
  if (!changes) return 0; /* absent or already masked: the record stays untouched */

  char *out = r->host->arena_alloc(batch, rec->message.len + hits * MASK_LEN);
  if (!out) {
    *failed = 1;
    return 0;
  }
  char *o = out;
  for (p = msg; p < end && (hit = memmem(p, (size_t)(end - p), r->pattern, r->pattern_len));) {
    const char *v = hit + r->pattern_len;
    memcpy(o, p, (size_t)(v - p));
    o += v - p;
    memcpy(o, mask, MASK_LEN);
    o += MASK_LEN;
    p = value_end(v, end);
  }
  memcpy(o, p, (size_t)(end - p));
  o += end - p;
  rec->message.ptr = out;
  rec->message.len = (size_t)(o - out);
  return 1;
}

static int filter(void *state, dm_batch *batch, uint8_t *verdicts) {
  redact *r = state;
  static const dm_str key = {"redacted", 8}, value = {"true", 4};
  int failed = 0;
  uint32_t masked = 0, dropped = 0;
  for (uint32_t i = 0; i < batch->count; ++i) {
    dm_record *rec = &batch->records[i];
    if (r->drop_service && rec->service.len == r->drop_service_len &&
        memcmp(rec->service.ptr, r->drop_service, r->drop_service_len) == 0) {
      verdicts[i] = DM_DROP;
      ++dropped;
      continue;
    }
    if (rec->message.len < r->pattern_len) continue;
    if (redact_message(r, batch, rec, &failed)) {
      if (r->host->meta_set(batch, rec, key, value, DM_META_STRING) != DM_OK) failed = 1;
      verdicts[i] = DM_MODIFIED;
      ++masked;
    }
  }
  if (masked) r->host->metric_add(r->masked, masked);
  if (dropped) r->host->metric_add(r->dropped, dropped);
  if (failed) r->host->log(r->inst, DM_LOG_ERROR, "out of batch memory; some records unmasked");
  return failed;
}

DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *host) {
  static const dm_plugin plugin = {
      .abi_major = DM_ABI_MAJOR,
      .abi_minor = DM_ABI_MINOR,
      .struct_size = sizeof(dm_plugin),
      .kind = DM_FILTER,
      .name = "example_redact",
      .version = "0.1.0",
      .description = "masks the value after a pattern in messages; drops one service",
      .options = options,
      .option_count = sizeof options / sizeof options[0],
      .create = create,
      .destroy = destroy,
      .filter = filter,
  };
  (void)host;
  return &plugin;
}
