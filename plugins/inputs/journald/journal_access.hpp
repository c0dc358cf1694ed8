// Whether the journal the input reads has files it may read. sd-journal opens an empty
// directory, or a system journal whose files it may not read, without an error and then simply
// returns nothing; this finds out, as journalctl does, from the files themselves.
#pragma once

#include <string>

#include "journald_config.hpp"

namespace devmesh::journald {

struct JournalAccess {
  enum Problem { kNone, kNoFiles, kPermission };
  Problem problem = kNone;
  unsigned files = 0;       // journal files found (*.journal, *.journal~)
  unsigned unreadable = 0;  // of them, or of their directories, those we may not read
  std::string reason;       // empty without a problem; names the user and the group for
                            // kPermission
};

// Looks at the directory of `path`, or at /run/log/journal and /var/log/journal for the local
// journal (with their machine-id subdirectories). For a list of files: always kNone (each was
// checked at start, and sd-journal refuses an unreadable one).
JournalAccess check_journal_access(const Settings &s);

}  // namespace devmesh::journald
