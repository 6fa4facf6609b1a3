// libFuzzer: the DICOMweb request parsing/routing path - request target
// (ParseTarget), routing on the DICOMweb patterns, QIDO query parsing at each
// level, Accept / Content-Type / Range parsing and the STOW multipart splitter.
// Input: <target line> '\n' <header value line> '\n' <multipart body>.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "libphi/web/multipart.h"
#include "libphi/web/qido.h"
#include "libphi/web/router.h"
#include "libphi/web/url.h"

namespace {
const phi::web::Router& Routes() {
  static const phi::web::Router* r = [] {
    auto* router = new phi::web::Router;
    for (const char* p :
         {"/studies", "/series", "/instances", "/studies/{study}/series",
          "/studies/{study}/instances", "/studies/{study}/series/{series}/instances",
          "/studies/{study}", "/studies/{study}/series/{series}",
          "/studies/{study}/series/{series}/instances/{instance}", "/studies/{study}/metadata",
          "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", "/metrics"}) {
      router->Add(phi::web::Method::kGet, p, phi::web::AllRoles(),
                  [](const phi::web::RequestContext&) { return phi::web::Response{}; });
    }
    return router;
  }();
  return *r;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t a = in.find('\n');
  std::string_view target = in.substr(0, a);
  std::string_view rest = a == std::string_view::npos ? "" : in.substr(a + 1);
  size_t b = rest.find('\n');
  std::string_view header = rest.substr(0, b);
  std::string_view body = b == std::string_view::npos ? "" : rest.substr(b + 1);

  auto t = phi::web::ParseTarget(target);
  if (t.ok()) {
    (void)Routes().Find(phi::web::Method::kGet, t->path);
    for (auto level : {phi::web::QidoLevel::kStudy, phi::web::QidoLevel::kSeries,
                       phi::web::QidoLevel::kInstance}) {
      (void)phi::web::ParseQido(level, t->query);
    }
  }
  (void)phi::web::ParseAccept(header);
  // A byte range, when granted, lies inside the representation.
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{1000}, body.size()}) {
    phi::web::ByteRangeDecision r = phi::web::DecideByteRange(header, n);
    if (r.kind == phi::web::ByteRangeDecision::Kind::kPartial &&
        (r.first > r.last || r.last >= n)) {
      __builtin_trap();
    }
  }
  auto mt = phi::web::ParseMediaType(header);
  std::string boundary = mt.ok() ? mt->Param("boundary") : std::string(header.substr(0, 70));
  auto parts = phi::web::ParseMultipart(body, boundary, 64);
  if (parts.ok()) {
    for (auto& p : *parts) {
      if (p.body.data() < body.data() ||
          p.body.data() + p.body.size() > body.data() + body.size()) {
        __builtin_trap();  // a part must be a view inside the body
      }
      (void)phi::web::ParseMediaType(p.Header("content-type"));
    }
  }
  return 0;
}
