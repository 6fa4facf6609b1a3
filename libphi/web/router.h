// phi::web::Router: the HTTPS request table. Routes are (method, path pattern
// with {params}, allowed roles, handler); later issues add DICOMweb routes
// (QIDO/WADO/STOW/DELETE) with Add(). Also the request/response types handlers
// see, free of Beast so that route code compiles fast.
// Thread-safety: Add() only before the server starts; Find() is const and may
// run concurrently. Handlers are called concurrently from the io threads.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/tls/peer_identity.h"
#include "libphi/util/status.h"

namespace phi::web {

enum class Method : uint8_t { kGet, kHead, kPost, kPut, kDelete, kOptions, kPatch };
std::optional<Method> ParseMethod(std::string_view s);
std::string_view MethodName(Method m);

using HeaderList = std::vector<std::pair<std::string, std::string>>;  // names lower case

struct RequestContext {
  Method method = Method::kGet;
  std::string path;                           // decoded path (no query)
  std::string route;                          // the matched pattern, e.g. "/studies/{study}"
  std::map<std::string, std::string> params;  // {name} values from the path
  std::vector<std::pair<std::string, std::string>> query;  // decoded query parameters
  HeaderList headers;
  std::string body;
  const tls::PeerIdentity* identity = nullptr;  // never null inside a handler
  config::Role role = config::Role::kClinician;
  std::string peer_address;
  uint64_t connection_id = 0;

  // First header with this (lower-case) name.
  std::optional<std::string_view> Header(std::string_view lower_name) const;
  // First query parameter with this name.
  std::optional<std::string_view> Query(std::string_view name) const;
};

// A pull source for a streamed response body: fills `buf` and returns the
// byte count; 0 means the end. Called repeatedly on one io thread (never
// concurrently); an error after the header is sent aborts the connection.
// Memory stays bounded by `buf` plus what the source itself holds.
using BodySource = std::function<Result<size_t>(std::span<char> buf)>;
// The zero-copy form of a streamed body: each call returns a view of the
// next bytes, which stays valid (and unchanged) until the next call or the
// source's release; an empty view means the end. Called like a BodySource.
using ChunkSource = std::function<Result<std::span<const char>>()>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  HeaderList headers;
  std::string body;
  // When set, `body` is ignored and the body is streamed from the source's
  // own buffers (e.g. ReadAheadChunks over a BodySource), with chunked
  // transfer encoding.
  ChunkSource chunks;
  // For a streamed body: its exact length, sent as Content-Length instead of
  // chunked transfer encoding. A source that ends early or gives more aborts
  // the connection (the client sees a short body, never a wrong one).
  std::optional<uint64_t> content_length;

  static Response Json(int status, std::string body);
  // RFC 9457 problem details: {"type":"about:blank","title":...,"status":...}.
  // `title` must be a fixed text: never put request data (PHI) in it.
  static Response Problem(int status, std::string_view title);
};

using Handler = std::function<Response(const RequestContext&)>;

class Router {
 public:
  // Pattern: "/a/{x}/b"; a {name} segment matches one non-empty segment.
  void Add(Method method, std::string pattern, std::vector<config::Role> roles, Handler handler);

  struct Route {
    Method method;
    std::string pattern;
    std::vector<std::string> segments;
    std::vector<config::Role> roles;
    Handler handler;
  };
  struct Match {
    enum class Kind { kFound, kMethodNotAllowed, kNotFound } kind = Kind::kNotFound;
    const Route* route = nullptr;
    std::map<std::string, std::string> params;
    std::string allow;  // for kMethodNotAllowed: "GET, POST"
  };
  Match Find(Method method, std::string_view path) const;

  static bool RoleAllowed(const Route& r, config::Role role);

 private:
  std::vector<Route> routes_;
};

// Every authenticated role.
std::vector<config::Role> AllRoles();

}  // namespace phi::web
