#include "libphi/web/router.h"

#include <nlohmann/json.hpp>

namespace phi::web {
namespace {
std::vector<std::string> SplitPath(std::string_view p) {
  std::vector<std::string> r;
  size_t b = 1;
  while (b <= p.size()) {
    size_t e = p.find('/', b);
    if (e == std::string_view::npos) e = p.size();
    r.emplace_back(p.substr(b, e - b));
    b = e + 1;
  }
  return r;
}
}  // namespace

std::optional<Method> ParseMethod(std::string_view s) {
  static const std::pair<std::string_view, Method> kAll[] = {
      {"GET", Method::kGet},    {"HEAD", Method::kHead},     {"POST", Method::kPost},
      {"PUT", Method::kPut},    {"DELETE", Method::kDelete}, {"OPTIONS", Method::kOptions},
      {"PATCH", Method::kPatch}};
  for (auto& [n, m] : kAll) {
    if (n == s) return m;
  }
  return std::nullopt;
}

std::string_view MethodName(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kPatch:
      return "PATCH";
  }
  return "?";
}

std::optional<std::string_view> RequestContext::Header(std::string_view lower_name) const {
  for (auto& [k, v] : headers) {
    if (k == lower_name) return std::string_view(v);
  }
  return std::nullopt;
}

std::optional<std::string_view> RequestContext::Query(std::string_view name) const {
  for (auto& [k, v] : query) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

Response Response::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::Problem(int status, std::string_view title) {
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  nlohmann::json j = {{"type", "about:blank"}, {"title", std::string(title)}, {"status", status}};
  r.body = j.dump();
  return r;
}

void Router::Add(Method method, std::string pattern, std::vector<config::Role> roles,
                 Handler handler) {
  Route r{method, pattern, SplitPath(pattern), std::move(roles), std::move(handler)};
  routes_.push_back(std::move(r));
}

Router::Match Router::Find(Method method, std::string_view path) const {
  Match m;
  auto segs = SplitPath(path);
  for (const auto& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    std::map<std::string, std::string> params;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const std::string& p = r.segments[i];
      if (p.size() >= 2 && p.front() == '{' && p.back() == '}') {
        ok = !segs[i].empty();
        if (ok) params[p.substr(1, p.size() - 2)] = segs[i];
      } else {
        ok = p == segs[i];
      }
    }
    if (!ok) continue;
    if (r.method == method) {
      m.kind = Match::Kind::kFound;
      m.route = &r;
      m.params = std::move(params);
      return m;
    }
    m.kind = Match::Kind::kMethodNotAllowed;
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += MethodName(r.method);
  }
  return m;
}

bool Router::RoleAllowed(const Route& r, config::Role role) {
  for (auto x : r.roles) {
    if (x == role) return true;
  }
  return false;
}

std::vector<config::Role> AllRoles() {
  return {config::Role::kClinician, config::Role::kShare, config::Role::kAdmin,
          config::Role::kModality};
}

}  // namespace phi::web
