// Directories the engine and its plugins write into (service.storage.path, each
// dead_letter_path's directory, every DM_OPT_MAKES_DIR / MAKES_PARENT option): checked by
// --dry-run without changing the machine, made (mkdir -p, 0700) at start.
#pragma once

#include <string>

namespace devmesh {

// The directory part of a path ("." for a bare name).
std::string parent_dir(const std::string &path);

// Whether dir can be used: it exists as a writable directory or, with create, is made (mkdir
// -p, 0700), or without create could be made (its nearest existing ancestor is a writable
// directory); false with the problem in `error`. `note` says what was (or would be) done.
bool prepare_directory(const std::string &dir, bool create, std::string &error, std::string &note);

// The same for a file the engine or a plugin writes at path (its directory), plus: the file,
// when it exists, is writable and no directory.
bool prepare_file_path(const std::string &path, bool create, std::string &error, std::string &note);

}  // namespace devmesh
