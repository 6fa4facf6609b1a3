// phi::index::hl7tables: the SQL of the HL7 tables (schema v3: patient_keys,
// hl7_messages, worklist, reports), used by SqliteCatalog's write transaction
// and readers. Internal to index/ (no other module includes it). Values are
// always bound parameters; every input is checked for length.
// Thread-safety: functions use the Db they are given (one thread at a time).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/index/sqlite_db.h"

namespace phi::index::hl7tables {

// The v3 migration's DDL.
std::string_view Ddl();

Result<std::string> GetPatientKey(Db& db, const Token& pid);
Status PutPatientKey(Db& db, int64_t now, const Token& pid, const std::string& key_id);
Result<std::vector<StudyRow>> ListStudiesOfPatient(Db& db, const Token& pid, size_t limit,
                                                   StudyRow (*read)(const Stmt&),
                                                   const char* study_cols_sql);
Result<int64_t> InsertMessage(Db& db, int64_t now, const Hl7MessageRow& r);
Result<bool> UpsertWorklist(Db& db, int64_t now, const WorklistRow& r);
Result<WorklistRow> FindWorklist(Db& db, const Token& accession);
Status DeleteWorklist(Db& db, const Token& accession);
Result<int64_t> InsertReport(Db& db, int64_t now, const ReportRow& r);
Status MovePatient(Db& db, const Token& from, const Token& to);
Result<Hl7Erased> EraseOfStudy(Db& db, const StudyRow& erased);

Result<std::vector<WorklistRow>> QueryWorklist(Db& db, const WorklistFilter& f);
Result<std::vector<ReportRow>> ListReports(Db& db, const Token& accession);
Result<std::vector<Hl7MessageRow>> ListMessages(Db& db, const Token& pid, size_t limit);

}  // namespace phi::index::hl7tables
