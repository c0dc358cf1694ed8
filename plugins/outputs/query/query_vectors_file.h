// The template vectors file (vectors_path) of the query plugin's embeddings: appended to after
// each batch, not rewritten, so a batch costs its own records and not the whole file's.
//
// Format 2, text: a header line {"devmesh_vectors":2,"model":"..."} then one line per record,
// "<length> <crc32, 8 hex> <json>": the JSON object {id, service, template, vector} of that
// many bytes and its CRC-32. A later record of an id replaces an earlier one. A crash during an
// append leaves a torn last record: reading stops at the first record whose length, checksum or
// JSON is wrong, and the file is cut there before the next append (the templates lost are
// embedded again: they are in the store without a vector). The file is rewritten whole
// (atomically, StateFile) when it is new, of another model, of format 1, or when it holds more
// than twice the live records (templates that changed leave their old records behind).
//
// Templates the store no longer has (retention removed them) are forgotten: their ids are
// marked dead, and compact() rewrites the file without them once dead and replaced records
// are more than half of it (not at every refresh: a rewrite costs the whole file, so it waits
// until it halves it). The format does not change.
//
// Two instances may write one file: the old and the new across a reload (the old one retires
// while the new one runs). Each append and rewrite holds flock(LOCK_EX) on PATH.lock (not on
// the file: a rewrite renames a new inode over it) and first checks that the file is still the
// inode and size it last left; if not, another writer was there, and the file is read again
// rather than cut to this writer's idea of it. A rewrite keeps the records of ids this writer
// does not hold (another writer's): no writer drops what another one appended, but for the ids
// it forgot (if the other writer embedded one of those again meanwhile, that record goes too;
// the other writer still holds it, and after a restart it is embedded again, as a stored
// template without a vector).
//
// Format 1, written by releases before this one: one JSON object {"model", "templates": [...]},
// rewritten whole after every batch. It is read, and replaced by format 2 at the first write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <sys/types.h>

#include <state_file.hpp>

namespace devmesh::query {

struct StoredVector {
  uint64_t id = 0;
  std::string service, template_text;
  std::vector<float> vector;
};

class VectorsFile {
 public:
  explicit VectorsFile(std::string path) : file_(path), lock_path_(path + ".lock") {}
  const std::string &path() const { return file_.path(); }
  const std::string &dir() const { return file_.dir(); }

  struct Contents {
    bool found = false;  // false: no file (an empty start)
    int format = 0;      // 1 or 2
    std::string model;
    std::vector<StoredVector> vectors;  // in file order (a later one of an id wins)
    uint64_t good_bytes = 0;            // format 2: the header and the whole records
    uint64_t torn_bytes = 0;            // format 2: what follows them (to be cut)
  };
  // Reads the file, writing nothing (a --dry-run loads it too). False with `error` when it is
  // there but unreadable or not a vectors file (a newer format included).
  bool read(Contents &out, std::string &error) const;

  // [writer thread] Takes over what read() found: appends go after its good records when it
  // is format 2 of `model`; anything else is rewritten at the first write.
  void adopt(const Contents &c, const std::string &model);
  // [writer thread] Cuts a torn tail found by read(), if it is still there once locked (what
  // read() saw may have been another writer's append under way): `at` and `torn` say what
  // was cut (torn 0: nothing). 0 or an errno.
  int cut_torn_tail(uint64_t &at, uint64_t &torn);

  // [writer thread] Appends `added`, or rewrites the file with `all` (the live records) when
  // appending is not possible or the file would hold more than twice the live records. 0 or an
  // errno; after a failure the next write rewrites.
  int write(const std::string &model, const std::vector<const StoredVector *> &added,
            const std::vector<const StoredVector *> &all);

  // [writer thread] Ids whose templates the store no longer has: their records are left out of
  // the next rewrite, although this writer does not hold them (which would keep them as another
  // writer's). An id written again (its template came back) is live again.
  void forget(const std::vector<uint64_t> &ids);
  // [writer thread] Rewrites the file with `all` (and another writer's records, not the
  // forgotten ones) when more than half of its records are dead or replaced, or when it cannot
  // be appended to and holds forgotten ones. 0 or an errno.
  struct Compaction {
    bool rewritten = false;
    uint64_t records_before = 0, records_after = 0, bytes_before = 0, bytes_after = 0;
  };
  int compact(const std::string &model, const std::vector<const StoredVector *> &all,
              Compaction &out);
  size_t forgotten() const { return dead_.size(); }

  // The text of a record line and of the header (for tests of the format, and write()).
  static std::string record_line(const StoredVector &v);
  static std::string header_line(const std::string &model);

 private:
  // Under the lock: reads the file again when it is not the inode and size this writer left,
  // and cuts a torn tail (no append is under way while the lock is held). 0 or an errno.
  int resync(const std::string &model, uint64_t *cut_at, uint64_t *cut);
  int append(const std::string &text);
  int rewrite(const std::string &model, const std::vector<const StoredVector *> &all);
  StateFile file_;
  std::string lock_path_;
  std::string model_;  // adopt()'s, for cut_torn_tail()
  bool appendable_ = false;
  bool known_ = false;  // ino_ and size_ are what the file was when this writer last looked
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  uint64_t size_ = 0;     // the good bytes, where the next append goes
  uint64_t records_ = 0;  // records in the file, live or replaced
  uint64_t foreign_ = 0;  // of those, the ids of another writer (kept at a rewrite)
  uint64_t generation_ = 0;
  std::unordered_set<uint64_t> dead_;  // forget()'s ids, until a rewrite leaves them out
};

}  // namespace devmesh::query
