/* example_file: an out-of-tree devmesh output in plain C, built with nothing but the installed
 * SDK (<devmesh/plugin.h>). It appends each record as one line, "LEVEL<TAB>SERVICE<TAB>MESSAGE",
 * to a file. A record it cannot write as one line (a message holding a line break, or longer
 * than max_line) is refused on its own with host->flush_record_status: the engine dead-letters
 * that record with its reason and counts the others delivered, in one flush. It shows the
 * output contract: flush on worker threads, per-record results, RETRY with a reason, health. */
#define _GNU_SOURCE /* strndup, fdatasync */
#include <devmesh/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const dm_option options[] = {
    {.key = "path",
     .type = DM_OPT_STRING,
     .flags = DM_OPT_REQUIRED,
     .description = "file the records are appended to (created if absent)"},
    {.key = "max_line",
     .type = DM_OPT_SIZE,
     .flags = DM_OPT_BOUNDED,
     .default_value = "64KiB",
     .min = 16,
     .max = 64.0 * 1024 * 1024,
     .description = "longest message written; a longer record is refused (dead-lettered)"},
    {.key = "fsync",
     .type = DM_OPT_BOOL,
     .default_value = "false",
     .description = "fsync the file before a flush counts as delivered"},
};

typedef struct file_out {
  const dm_host_api *host;
  dm_instance *inst;
  char *path;
  size_t max_line;
  int fsync;
  int fd;
  /* Workers flush in parallel; one flush's lines stay together in the file. */
  pthread_mutex_t write_mu;
  dm_metric *m_written, *m_refused;
  char last_error[256]; /* as dm_flush_result.reason, for health(), under write_mu */
} file_out;

static void destroy(void *state) {
  file_out *f = state;
  if (f->fd >= 0) close(f->fd);
  pthread_mutex_destroy(&f->write_mu);
  free(f->path);
  free(f);
}

static int create(const dm_host_api *host, dm_instance *inst, const dm_config *cfg, void **state) {
  file_out *f = calloc(1, sizeof *f);
  if (!f) return 1;
  f->host = host;
  f->inst = inst;
  f->fd = -1;
  pthread_mutex_init(&f->write_mu, NULL);
  dm_str path = host->config_string(cfg, "path");
  f->path = strndup(path.ptr, path.len);
  f->max_line = (size_t)host->config_int(cfg, "max_line");
  f->fsync = host->config_bool(cfg, "fsync");
  if (!f->path) {
    destroy(f);
    return 1;
  }
  f->m_written = host->metric_counter(inst, "example_file_records_written_total",
                                      "records appended to the file", NULL);
  f->m_refused = host->metric_counter(inst, "example_file_records_refused_total",
                                      "records refused one by one (line break or max_line)", NULL);
  *state = f;
  return 0;
}

/* Opened in start(), not create(): --dry-run runs create() and must not create files. */
static int start(void *state) {
  file_out *f = state;
  f->fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (f->fd < 0) {
    f->host->log(f->inst, DM_LOG_ERROR, "path %s: %s", f->path, strerror(errno));
    return 1;
  }
  return 0;
}

/* Why a record cannot be one line of the file, or NULL when it can. */
static const char *refusal(const file_out *f, const dm_record *r, char *buf, size_t cap) {
  if (r->message.len > f->max_line) {
    snprintf(buf, cap, "message of %zu bytes is longer than max_line (%zu)", r->message.len,
             f->max_line);
    return buf;
  }
  if (r->message.len && (memchr(r->message.ptr, '\n', r->message.len) ||
                         memchr(r->message.ptr, '\r', r->message.len)))
    return "message holds a line break";
  return NULL;
}

static void append(char **p, dm_str s) {
  if (s.len) memcpy(*p, s.ptr, s.len);
  *p += s.len;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static dm_flush_status flush(void *state, void *worker_state, const dm_batch *batch,
                             dm_flush_token *token, dm_flush_result *result) {
  file_out *f = state;
  (void)worker_state;
  size_t size = 0;
  for (uint32_t i = 0; i < batch->count; ++i) {
    const dm_record *r = &batch->records[i];
    size += strlen(dm_level_name(r->level)) + r->service.len + r->message.len + 3;
  }
  char *text = malloc(size ? size : 1), *p = text;
  if (!text) {
    snprintf(result->reason, sizeof result->reason, "out of memory");
    return DM_FLUSH_RETRY;
  }
  uint32_t refused = 0;
  for (uint32_t i = 0; i < batch->count; ++i) {
    const dm_record *r = &batch->records[i];
    char why[128];
    const char *bad = refusal(f, r, why, sizeof why);
    if (bad) {
      /* Only this record is dead-lettered (with this reason) once the flush returns OK. */
      f->host->flush_record_status(token, i, DM_FLUSH_ERROR, bad);
      ++refused;
      continue;
    }
    const char *level = dm_level_name(r->level);
    append(&p, (dm_str){level, strlen(level)});
    *p++ = '\t';
    append(&p, r->service);
    *p++ = '\t';
    append(&p, r->message);
    *p++ = '\n';
  }
  pthread_mutex_lock(&f->write_mu);
  int rc = write_all(f->fd, text, (size_t)(p - text));
  if (rc == 0 && f->fsync) rc = fdatasync(f->fd);
  if (rc != 0) {
    /* A short write may have left part of the flush in the file: the retry appends it whole,
     * so a line can appear twice but none is lost (at-least-once, like every devmesh output). */
    snprintf(result->reason, sizeof result->reason, "%s: %s", f->path, strerror(errno));
    memcpy(f->last_error, result->reason, sizeof f->last_error);
  } else {
    f->last_error[0] = '\0';
  }
  pthread_mutex_unlock(&f->write_mu);
  free(text);
  if (rc != 0) return DM_FLUSH_RETRY; /* the marks above are discarded with it */
  f->host->metric_add(f->m_written, batch->count - refused);
  if (refused) f->host->metric_add(f->m_refused, refused);
  return DM_FLUSH_OK;
}

static int health(void *state, char *buf, size_t cap) {
  file_out *f = state;
  pthread_mutex_lock(&f->write_mu);
  int bad = f->last_error[0] != '\0';
  if (bad) snprintf(buf, cap, "%s", f->last_error);
  pthread_mutex_unlock(&f->write_mu);
  return bad;
}

DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *host) {
  static const dm_plugin plugin = {
      .abi_major = DM_ABI_MAJOR,
      .abi_minor = DM_ABI_MINOR,
      .struct_size = sizeof(dm_plugin),
      .kind = DM_OUTPUT,
      .flags = DM_FLUSH_ON_WORKER,
      .name = "example_file",
      .version = "0.1.0",
      .description = "appends records as lines to a file; refuses one that is not one line",
      .options = options,
      .option_count = sizeof options / sizeof options[0],
      .create = create,
      .start = start,
      .destroy = destroy,
      .flush = flush,
      .health = health,
  };
  (void)host;
  return &plugin;
}
