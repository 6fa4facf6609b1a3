#include "libphi/web/router.h"

#include <gtest/gtest.h>

namespace phi::web {
namespace {

TEST(Router, MatchesPatternsAndReportsAllowedMethods) {
  Router r;
  r.Add(Method::kGet, "/studies/{study}/series", {config::Role::kClinician},
        [](const RequestContext& c) { return Response::Json(200, c.params.at("study")); });
  r.Add(Method::kPost, "/studies", {config::Role::kModality}, nullptr);
  r.Add(Method::kDelete, "/studies/{study}/series", {config::Role::kAdmin}, nullptr);

  auto m = r.Find(Method::kGet, "/studies/1.2.3/series");
  ASSERT_EQ(m.kind, Router::Match::Kind::kFound);
  EXPECT_EQ(m.params.at("study"), "1.2.3");
  EXPECT_EQ(m.route->pattern, "/studies/{study}/series");
  EXPECT_TRUE(Router::RoleAllowed(*m.route, config::Role::kClinician));
  EXPECT_FALSE(Router::RoleAllowed(*m.route, config::Role::kShare));

  m = r.Find(Method::kPut, "/studies/1.2.3/series");
  EXPECT_EQ(m.kind, Router::Match::Kind::kMethodNotAllowed);
  EXPECT_EQ(m.allow, "GET, DELETE");
  EXPECT_EQ(r.Find(Method::kGet, "/studies//series").kind, Router::Match::Kind::kNotFound);
  EXPECT_EQ(r.Find(Method::kGet, "/studies/1/series/x").kind, Router::Match::Kind::kNotFound);
}

TEST(Response, ProblemJsonIsRfc9457) {
  Response p = Response::Problem(404, "Not Found");
  EXPECT_EQ(p.status, 404);
  EXPECT_EQ(p.content_type, "application/problem+json");
  EXPECT_EQ(p.body, R"({"status":404,"title":"Not Found","type":"about:blank"})");
}

}  // namespace
}  // namespace phi::web
