// The catalog's schema as an ordered list of migrations (index/ private).
// Migration N brings a database from user_version N-1 to N. Adding a table
// later (orders/worklist, hl7 messages, forward queue) = appending one entry.
// Never edit a released migration. See README.md for the schema's rationale.
// Thread-safety: immutable data.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace phi::index {

struct Migration {
  int version;            // user_version after it ran
  std::string_view name;  // for logs
  std::string sql;        // one or more statements
};

// All migrations, ascending by version (1, 2, ...).
const std::vector<Migration>& Migrations();
int LatestSchemaVersion();

}  // namespace phi::index
