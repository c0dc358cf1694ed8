/* A shared object that is not a devmesh plugin: it has no dm_plugin_entry. */
int not_a_plugin(void);
int not_a_plugin(void) {
  return 42;
}
