// phi::services::Deidentifier: DICOM PS3.15 Annex E, Basic Application Level
// Confidentiality Profile, applied on the fly for the `share` role (web/).
// Owns the profile's attribute table (remove X / empty Z / replace UID U),
// the UID mapping (UID -> "2.25.<decimal of 128 bits of HMAC(index key,
// "deid-uid" || uid)>", so the same original UID always maps to the same new
// one and nobody without the vault can invert it), and the option Retain
// Longitudinal Temporal Information with Modified Dates (every date shifted
// by a per-patient number of days derived the same way).
// Thread-safety: thread-safe (immutable after construction; the vault is).
#pragma once

#include <string>
#include <string_view>

#include "libphi/util/status.h"
#include "libphi/vault/key_vault.h"

class DcmItem;

namespace phi::services {

struct DeidOptions {
  // Retain Longitudinal Temporal Information with Modified Dates (113107):
  // dates are shifted (per patient) instead of emptied/removed.
  bool modified_dates = false;
};

class Deidentifier {
 public:
  // REQUIRES: vault.derivation_loaded(); vault outlives this.
  Deidentifier(const vault::KeyVault& vault, DeidOptions options)
      : vault_(vault), options_(options) {}

  const DeidOptions& options() const { return options_; }

  // The replacement UID of `uid` ("2.25." + up to 39 digits; <= 44 chars).
  std::string Uid(std::string_view uid) const;
  // Days to add to every date of the patient identified by `patient_key`
  // (e.g. the original PatientID): in [-3650, -1] with modified_dates, else 0.
  int DateShiftDays(std::string_view patient_key) const;
  // A DA value shifted by `days`; "" when `da` is not YYYYMMDD.
  static std::string ShiftDate(std::string_view da, int days);
  // The date to show for an original DA value: shifted with modified_dates,
  // "" otherwise (Z in the profile).
  std::string Date(std::string_view da, std::string_view patient_key) const;

  // Applies the profile to a dataset in place: the table's attributes
  // removed/emptied, UIDs replaced (also inside sequences), private
  // attributes removed, PatientIdentityRemoved=YES and DeidentificationMethod
  // (+ code sequence) set. `patient_key` seeds the date shift.
  Status Apply(DcmItem& dataset, std::string_view patient_key) const;

  static constexpr char kMethod[] = "PS3.15 E.1 Basic Application Confidentiality Profile";
  static constexpr char kMethodModifiedDates[] =
      "PS3.15 E.1 Basic Application Confidentiality Profile; Retain Longitudinal Temporal "
      "Information with Modified Dates";
  std::string_view method() const {
    return options_.modified_dates ? kMethodModifiedDates : kMethod;
  }

 private:
  const vault::KeyVault& vault_;
  const DeidOptions options_;
};

// "2.25." + the decimal value of the first 16 bytes (big-endian) of `digest`.
std::string Uid225FromBytes(const unsigned char* bytes16);

}  // namespace phi::services
