// Directories the engine writes its state into (service.storage.path, each dead_letter_path's
// directory): checked by --dry-run without changing the machine, made (mkdir -p, 0750) at start.
#pragma once

#include <string>

namespace devmesh {

// Whether dir can be used: it exists as a writable directory or, with create, is made (mkdir
// -p, 0750), or without create could be made (its nearest existing ancestor is a writable
// directory); false with the problem in `error`. `note` says what was (or would be) done.
bool prepare_directory(const std::string &dir, bool create, std::string &error, std::string &note);

// The same for a dead-letter file at path (its directory), plus: the file, when it exists, is a
// writable regular file.
bool prepare_dead_letter_path(const std::string &path, bool create, std::string &error,
                              std::string &note);

}  // namespace devmesh
