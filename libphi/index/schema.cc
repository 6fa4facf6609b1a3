#include "libphi/index/schema.h"

#include "libphi/audit/audit_log.h"
#include "libphi/index/hl7_tables.h"

namespace phi::index {
namespace {

// v4: the calling AE title that first stored each study (not PHI), for
// retention rules by source AE. NULL for studies stored before v4 and for
// studies created by STOW-RS.
constexpr std::string_view kV4SourceAe = R"sql(
ALTER TABLE studies ADD COLUMN source_ae TEXT;
CREATE INDEX studies_source_ae ON studies(source_ae) WHERE source_ae IS NOT NULL;
)sql";

// v1: keys, index, metadata.
constexpr std::string_view kV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value BLOB NOT NULL
);

CREATE TABLE study_keys (
  key_id     TEXT PRIMARY KEY,
  kek_id     TEXT NOT NULL,
  wrapped    BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  rewrapped_at INTEGER
);
CREATE INDEX study_keys_kek ON study_keys(kek_id);

CREATE TABLE studies (
  study_pk         INTEGER PRIMARY KEY,
  key_id           TEXT NOT NULL REFERENCES study_keys(key_id),
  study_uid_token  BLOB NOT NULL UNIQUE CHECK (length(study_uid_token) = 32),
  patient_id_token BLOB CHECK (patient_id_token IS NULL OR length(patient_id_token) = 32),
  accession_token  BLOB CHECK (accession_token IS NULL OR length(accession_token) = 32),
  study_year       INTEGER,
  modalities       TEXT NOT NULL DEFAULT '',
  num_series       INTEGER NOT NULL DEFAULT 0,
  num_instances    INTEGER NOT NULL DEFAULT 0,
  total_bytes      INTEGER NOT NULL DEFAULT 0,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  last_access_at   INTEGER NOT NULL,
  legal_hold       INTEGER NOT NULL DEFAULT 0,
  conflict         INTEGER NOT NULL DEFAULT 0,
  retain_until     INTEGER,
  flags            INTEGER NOT NULL DEFAULT 0,
  phi              BLOB NOT NULL
);
CREATE INDEX studies_key ON studies(key_id);
CREATE INDEX studies_patient ON studies(patient_id_token) WHERE patient_id_token IS NOT NULL;
CREATE INDEX studies_accession ON studies(accession_token) WHERE accession_token IS NOT NULL;
CREATE INDEX studies_year ON studies(study_year);
CREATE INDEX studies_created ON studies(created_at);
CREATE INDEX studies_access ON studies(last_access_at);

CREATE TABLE series (
  series_pk        INTEGER PRIMARY KEY,
  study_pk         INTEGER NOT NULL REFERENCES studies(study_pk) ON DELETE CASCADE,
  series_uid_token BLOB NOT NULL UNIQUE CHECK (length(series_uid_token) = 32),
  modality         TEXT NOT NULL DEFAULT '',
  series_number    INTEGER,
  num_instances    INTEGER NOT NULL DEFAULT 0,
  flags            INTEGER NOT NULL DEFAULT 0,
  phi              BLOB NOT NULL
);
CREATE INDEX series_study ON series(study_pk, modality);
CREATE INDEX series_modality ON series(modality, study_pk);

CREATE TABLE instances (
  instance_pk         INTEGER PRIMARY KEY,
  series_pk           INTEGER NOT NULL REFERENCES series(series_pk) ON DELETE CASCADE,
  sop_uid_token       BLOB NOT NULL UNIQUE CHECK (length(sop_uid_token) = 32),
  sop_class_uid       TEXT NOT NULL DEFAULT '',
  transfer_syntax_uid TEXT NOT NULL DEFAULT '',
  instance_number     INTEGER,
  object_id           TEXT NOT NULL UNIQUE,
  size_bytes          INTEGER NOT NULL CHECK (size_bytes >= 0),
  stored_at           INTEGER NOT NULL,
  flags               INTEGER NOT NULL DEFAULT 0,
  phi                 BLOB NOT NULL
);
CREATE INDEX instances_series ON instances(series_pk);

-- Counters follow the rows, in the same transaction, whoever writes them.
CREATE TRIGGER instances_ai AFTER INSERT ON instances BEGIN
  UPDATE series SET num_instances = num_instances + 1 WHERE series_pk = NEW.series_pk;
  UPDATE studies SET num_instances = num_instances + 1, total_bytes = total_bytes + NEW.size_bytes
   WHERE study_pk = (SELECT study_pk FROM series WHERE series_pk = NEW.series_pk);
END;
CREATE TRIGGER instances_ad AFTER DELETE ON instances BEGIN
  UPDATE series SET num_instances = num_instances - 1 WHERE series_pk = OLD.series_pk;
  UPDATE studies SET num_instances = num_instances - 1, total_bytes = total_bytes - OLD.size_bytes
   WHERE study_pk = (SELECT study_pk FROM series WHERE series_pk = OLD.series_pk);
END;
CREATE TRIGGER instances_au AFTER UPDATE OF size_bytes, series_pk ON instances BEGIN
  UPDATE series SET num_instances = num_instances - 1 WHERE series_pk = OLD.series_pk;
  UPDATE studies SET num_instances = num_instances - 1, total_bytes = total_bytes - OLD.size_bytes
   WHERE study_pk = (SELECT study_pk FROM series WHERE series_pk = OLD.series_pk);
  UPDATE series SET num_instances = num_instances + 1 WHERE series_pk = NEW.series_pk;
  UPDATE studies SET num_instances = num_instances + 1, total_bytes = total_bytes + NEW.size_bytes
   WHERE study_pk = (SELECT study_pk FROM series WHERE series_pk = NEW.series_pk);
END;
CREATE TRIGGER series_ai AFTER INSERT ON series BEGIN
  UPDATE studies SET num_series = num_series + 1,
    modalities = (SELECT ifnull(group_concat(DISTINCT modality), '') FROM series
                   WHERE study_pk = NEW.study_pk AND modality <> '')
   WHERE study_pk = NEW.study_pk;
END;
CREATE TRIGGER series_ad AFTER DELETE ON series BEGIN
  UPDATE studies SET num_series = num_series - 1,
    modalities = (SELECT ifnull(group_concat(DISTINCT modality), '') FROM series
                   WHERE study_pk = OLD.study_pk AND modality <> '')
   WHERE study_pk = OLD.study_pk;
END;
)sql";

}  // namespace

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kAll = {
      {1, "index", std::string(kV1)},
      // v2: the audit trail; its DDL and row format belong to audit/.
      {2, "audit", std::string(audit::TableDdl())},
      // v3: HL7 patient keys, messages, worklist, reports (hl7_tables.cc, README "HL7").
      {3, "hl7", std::string(hl7tables::Ddl())},
      // v4: studies.source_ae (retention by source AE).
      {4, "source_ae", std::string(kV4SourceAe)},
  };
  return kAll;
}

int LatestSchemaVersion() { return Migrations().back().version; }

}  // namespace phi::index
