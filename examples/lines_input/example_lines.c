/* example_lines: an out-of-tree devmesh input in plain C, built with nothing but the installed
 * SDK (<devmesh/plugin.h>). It reads a text file to its end, one record per line, then finishes.
 * With state_file it remembers how far every output has finished with the lines (on_ack), so a
 * restart resumes after the last finished line: nothing finished is read again, nothing
 * unfinished is skipped. It shows the input contract: batches, backpressure (pause, resume,
 * DM_ERR_FULL), acks that come out of order, and input_finished. */
#define _GNU_SOURCE /* getline */
#include <devmesh/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dm_option options[] = {
    {.key = "path",
     .type = DM_OPT_STRING,
     .flags = DM_OPT_REQUIRED,
     .description = "file to read, one record per line"},
    {.key = "state_file",
     .type = DM_OPT_STRING,
     .description = "keeps the offset after the last line every output finished with; without "
                    "it every start reads the whole file"},
    {.key = "batch",
     .type = DM_OPT_INT,
     .flags = DM_OPT_BOUNDED,
     .default_value = "500",
     .min = 1,
     .max = 100000,
     .description = "most lines per submitted batch"},
    {.key = "service",
     .type = DM_OPT_STRING,
     .default_value = "example_lines",
     .description = "service field of every record"},
};

/* A submitted batch waiting for its ack, with the place just after its last line. */
typedef struct pending {
  uint64_t ticket;
  long end_offset;
  uint64_t end_line;
  int done;
} pending;

typedef struct lines {
  const dm_host_api *host;
  dm_instance *inst;
  char *path, *state_file, *service;
  uint32_t batch;
  FILE *file;
  long offset;   /* of the next line to read */
  uint64_t line; /* number of the next line to read, from 1 */
  dm_timer *timer;
  int paused, eof;
  char *buf; /* getline's buffer */
  size_t buf_cap;
  /* Batches in submit order, from head; acks may finish them in any order, but the state file
   * only moves past a batch once it and every batch before it are finished. */
  pending *queue;
  size_t head, count, cap;
  dm_metric *m_read, *m_failed, *m_pauses;
} lines;

static char *dup_str(dm_str s) {
  char *p = malloc(s.len + 1);
  if (p) {
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
  }
  return p;
}

static void destroy(void *state) {
  lines *l = state;
  if (l->timer) l->host->timer_free(l->timer);
  if (l->file) fclose(l->file);
  free(l->path);
  free(l->state_file);
  free(l->service);
  free(l->buf);
  free(l->queue);
  free(l);
}

static int create(const dm_host_api *host, dm_instance *inst, const dm_config *cfg, void **state) {
  lines *l = calloc(1, sizeof *l);
  if (!l) return 1;
  l->host = host;
  l->inst = inst;
  l->line = 1;
  l->batch = (uint32_t)host->config_int(cfg, "batch");
  l->path = dup_str(host->config_string(cfg, "path"));
  l->service = dup_str(host->config_string(cfg, "service"));
  if (host->config_has(cfg, "state_file"))
    l->state_file = dup_str(host->config_string(cfg, "state_file"));
  if (!l->path || !l->service || (host->config_has(cfg, "state_file") && !l->state_file)) {
    destroy(l);
    return 1;
  }
  l->m_read =
      host->metric_counter(inst, "example_lines_read_total", "lines read and submitted", NULL);
  l->m_pauses = host->metric_counter(inst, "example_lines_pauses_total",
                                     "times backpressure paused the reading", NULL);
  l->m_failed = host->metric_counter(inst, "example_lines_failed_total",
                                     "line deliveries that failed for good (not kept)", NULL);
  *state = l;
  return 0;
}

/* The state file holds "OFFSET LINE": where to go on from. Written to a temporary file and
 * renamed over the old one, so a crash leaves the old state or the new one, never half. */
static void save_state(lines *l, long offset, uint64_t line) {
  if (!l->state_file) return;
  size_t n = strlen(l->state_file) + 5;
  char *tmp = malloc(n);
  if (!tmp) return;
  snprintf(tmp, n, "%s.tmp", l->state_file);
  FILE *f = fopen(tmp, "w");
  int ok = f && fprintf(f, "%ld %llu\n", offset, (unsigned long long)line) > 0;
  if (f && fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, l->state_file) != 0)
    l->host->log(l->inst, DM_LOG_ERROR, "state_file %s: %s", l->state_file, strerror(errno));
  free(tmp);
}

static void load_state(lines *l) {
  if (!l->state_file) return;
  FILE *f = fopen(l->state_file, "r");
  if (!f) return; /* first start */
  long offset;
  unsigned long long line;
  if (fscanf(f, "%ld %llu", &offset, &line) == 2 && offset >= 0 && line >= 1) {
    l->offset = offset;
    l->line = line;
  } else {
    l->host->log(l->inst, DM_LOG_WARN, "state_file %s: unreadable, reading from the start",
                 l->state_file);
  }
  fclose(f);
}

static int push_pending(lines *l, uint64_t ticket) {
  if (l->head + l->count == l->cap) {
    if (l->head > 0) { /* slide the live entries to the front before growing */
      memmove(l->queue, l->queue + l->head, l->count * sizeof *l->queue);
      l->head = 0;
    }
    if (l->count == l->cap) {
      size_t cap = l->cap ? l->cap * 2 : 16;
      pending *q = realloc(l->queue, cap * sizeof *q);
      if (!q) return 1;
      l->queue = q;
      l->cap = cap;
    }
  }
  l->queue[l->head + l->count++] = (pending){ticket, l->offset, l->line, 0};
  return 0;
}

/* Reads up to `batch` lines into one batch and submits it. */
static void read_some(void *arg) {
  lines *l = arg;
  const dm_host_api *host = l->host;
  if (l->paused || l->eof) return;
  dm_batch *b = host->batch_new(l->inst, l->batch);
  if (!b) return; /* out of memory: the next tick tries again */
  const long start_offset = l->offset;
  const uint64_t start_line = l->line;
  const dm_str path = host->arena_copy(b, l->path, strlen(l->path));
  const dm_str service = host->arena_copy(b, l->service, strlen(l->service));
  static const dm_str line_key = {"line", 4};
  uint32_t n = 0;
  ssize_t len = 0;
  while (n < l->batch && (len = getline(&l->buf, &l->buf_cap, l->file)) > 0) {
    dm_record *r = host->batch_add(b);
    if (!r) break;
    l->offset += len;
    size_t text = (size_t)len;
    while (text > 0 && (l->buf[text - 1] == '\n' || l->buf[text - 1] == '\r')) --text;
    r->timestamp_ns = (int64_t)host->now_ns();
    r->level = DM_LEVEL_INFO;
    r->source = path;
    r->service = service;
    r->message = host->arena_copy(b, l->buf, text);
    /* The same line of the same file always gets the same event_id: a line read again after a
     * crash is recognisable downstream as the same event. */
    char id[4096 + 24];
    int idn = snprintf(id, sizeof id, "%s:%llu", l->path, (unsigned long long)l->line);
    host->hash128(id, idn > 0 && (size_t)idn < sizeof id ? (size_t)idn : sizeof id - 1,
                  r->event_id);
    char num[24];
    int nn = snprintf(num, sizeof num, "%llu", (unsigned long long)l->line);
    host->meta_set(b, r, line_key, (dm_str){num, (size_t)nn}, DM_META_INT);
    ++l->line;
    ++n;
  }
  if (n == 0) {
    host->batch_free(b);
    if (ferror(l->file)) {
      host->log(l->inst, DM_LOG_ERROR, "%s: %s", l->path, strerror(errno));
      clearerr(l->file);
      return; /* the next tick tries again */
    }
    l->eof = 1;
    host->timer_stop(l->timer);
    host->log(l->inst, DM_LOG_INFO, "%s: read to its end (%llu lines)", l->path,
              (unsigned long long)(l->line - 1));
    host->input_finished(l->inst);
    return;
  }
  uint64_t ticket = 0;
  int rc = host->submit(l->inst, b, &ticket);
  if (rc == DM_OK) {
    host->metric_add(l->m_read, n);
    if (push_pending(l, ticket) != 0)
      host->log(l->inst, DM_LOG_ERROR, "out of memory: the state file stops moving");
    return;
  }
  /* Refused (DM_ERR_FULL: paused by backpressure, resume() restarts us; or stopping): the batch
   * is still ours. Read the same lines again next time. */
  host->batch_free(b);
  l->offset = start_offset;
  l->line = start_line;
  if (fseek(l->file, start_offset, SEEK_SET) != 0)
    host->log(l->inst, DM_LOG_ERROR, "%s: seek: %s", l->path, strerror(errno));
  if (rc != DM_ERR_FULL) host->timer_stop(l->timer);
}

static int start(void *state) {
  lines *l = state;
  load_state(l);
  l->file = fopen(l->path, "r");
  if (!l->file) {
    l->host->log(l->inst, DM_LOG_ERROR, "path %s: %s", l->path, strerror(errno));
    return 1;
  }
  if (l->offset > 0 && fseek(l->file, l->offset, SEEK_SET) != 0) {
    l->host->log(l->inst, DM_LOG_ERROR, "path %s: seek to %ld: %s", l->path, l->offset,
                 strerror(errno));
    return 1;
  }
  l->timer = l->host->timer_new(l->inst, read_some, l);
  l->host->timer_start(l->timer, 0, 1);
  return 0;
}

static void stop(void *state) {
  lines *l = state;
  if (l->timer) l->host->timer_stop(l->timer);
  l->eof = 1;
}

static void pause_input(void *state) {
  lines *l = state;
  l->paused = 1;
  l->host->metric_add(l->m_pauses, 1);
  if (l->timer) l->host->timer_stop(l->timer);
}

static void resume_input(void *state) {
  lines *l = state;
  l->paused = 0;
  if (l->timer && !l->eof) l->host->timer_start(l->timer, 0, 1);
}

static void on_ack(void *state, const dm_ack *ack) {
  lines *l = state;
  if (ack->stage != DM_ACK_DONE) return;
  if (ack->failed) {
    /* Lost for good (no dead-letter file downstream): reading the line again would not help. */
    l->host->metric_add(l->m_failed, ack->failed);
    l->host->log(l->inst, DM_LOG_ERROR, "%u line deliveries failed and were not kept: %s",
                 ack->failed, ack->failed_reason ? ack->failed_reason : "");
  }
  for (size_t i = l->head; i < l->head + l->count; ++i)
    if (l->queue[i].ticket == ack->ticket) l->queue[i].done = 1;
  const pending *last = NULL;
  while (l->count > 0 && l->queue[l->head].done) {
    last = &l->queue[l->head];
    ++l->head;
    --l->count;
  }
  if (last) save_state(l, last->end_offset, last->end_line);
  if (l->count == 0) l->head = 0;
}

DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *host) {
  static const dm_plugin plugin = {
      .abi_major = DM_ABI_MAJOR,
      .abi_minor = DM_ABI_MINOR,
      .struct_size = sizeof(dm_plugin),
      .kind = DM_INPUT,
      .name = "example_lines",
      .version = "0.1.0",
      .description = "reads a text file, one record per line; resumes after the last acked line",
      .options = options,
      .option_count = sizeof options / sizeof options[0],
      .create = create,
      .start = start,
      .stop = stop,
      .destroy = destroy,
      .pause = pause_input,
      .resume = resume_input,
      .on_ack = on_ack,
  };
  (void)host;
  return &plugin;
}
