/* A minimal valid output plugin in plain C; each test plugin changes one field. */
#include <devmesh/plugin.h>

static int create(const dm_host_api *h, dm_instance *i, const dm_config *c, void **s) {
  (void)h;
  (void)i;
  (void)c;
  *s = 0;
  return 0;
}
static void destroy(void *s) {
  (void)s;
}
static dm_flush_status flush(void *s, void *w, const dm_batch *b, dm_flush_token *t,
                             dm_flush_result *r) {
  (void)s;
  (void)w;
  (void)b;
  (void)t;
  (void)r;
  return DM_FLUSH_OK;
}
#define TEST_PLUGIN(NAME, MAJOR, MINOR)                                 \
  DM_EXPORT const dm_plugin *dm_plugin_entry(const dm_host_api *host) { \
    (void)host;                                                         \
    static dm_plugin p = {MAJOR,                                        \
                          MINOR,                                        \
                          sizeof(dm_plugin),                            \
                          DM_OUTPUT,                                    \
                          0,                                            \
                          NAME,                                         \
                          "1.0",                                        \
                          "ABI test plugin",                            \
                          0,                                            \
                          0,                                            \
                          create,                                       \
                          0,                                            \
                          0,                                            \
                          destroy,                                      \
                          0,                                            \
                          0,                                            \
                          0,                                            \
                          0,                                            \
                          0,                                            \
                          0,                                            \
                          flush,                                        \
                          0};                                           \
    return &p;                                                          \
  }
