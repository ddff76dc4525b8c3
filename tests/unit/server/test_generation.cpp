// Config generations built from real config text: dispatch, merge, location and server choice.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "core/config/error.hpp"
#include "core/core_module.hpp"
#include "core/generation.hpp"
#include "core/http/http_core_module.hpp"

namespace tollgate {
namespace {

class GenerationTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/tollgate-gen-XXXXXX";
        dir_ = mkdtemp(tmpl);
        mkdir((dir_ + "/logs").c_str(), 0755);  // the default access log goes there
    }
    void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

    std::shared_ptr<const ConfigGeneration> build(const std::string& http) {
        std::ofstream(dir_ + "/t.conf") << "events { }\n" << http;
        BuildOptions o;
        o.prefix = dir_;
        o.conf_path = "t.conf";
        return GenerationBuilder::build(o);
    }
    std::string error_of(const std::string& http) {
        try {
            build(http);
        } catch (const conf::ConfigError& e) {
            return e.what();
        }
        return "no error";
    }
    std::string dir_;
};

TEST_F(GenerationTest, LocationOrderFollowsNginx) {
    auto gen = build(R"(http { server { listen 127.0.0.1:1;
        location / { }
        location /images/ { }
        location ^~ /static/ { }
        location ~* \.(png|gif)$ { }
        location = /exact { }
        location ~ ^/static/x { }
        location @named { }
    } })");
    const http::Server& s = *gen->http->servers.at(0);
    EXPECT_EQ(s.find_location("/exact")->pattern, "/exact");
    EXPECT_EQ(s.find_location("/exact")->kind, http::Location::Kind::Exact);
    EXPECT_EQ(s.find_location("/exactly")->pattern, "/");
    EXPECT_EQ(s.find_location("/images/a.txt")->pattern, "/images/");
    EXPECT_EQ(s.find_location("/images/a.PNG")->pattern, "\\.(png|gif)$");  // regex beats prefix
    EXPECT_EQ(s.find_location("/static/x.png")->pattern, "/static/");       // ^~ stops regexes
    EXPECT_EQ(s.find_location("/other")->pattern, "/");
    EXPECT_EQ(s.named.count("@named"), 1u);
}

TEST_F(GenerationTest, NoMatchUsesServerDefaults) {
    auto gen = build("http { server { listen 127.0.0.1:1; location /a { } } }");
    const http::Server& s = *gen->http->servers.at(0);
    EXPECT_EQ(s.find_location("/b")->kind, http::Location::Kind::ServerDefault);
}

TEST_F(GenerationTest, ServerNamesAndDefaultServer) {
    auto gen = build(R"(http {
        server { listen 127.0.0.1:1; server_name a.example.com; }
        server { listen 127.0.0.1:1 default_server; server_name *.example.com; }
        server { listen 127.0.0.1:1; server_name www.*; }
        server { listen 127.0.0.1:1; server_name ~^api\d+\.test$; }
    })");
    const http::Listen& l = gen->http->listens.at(0);
    const auto& servers = gen->http->servers;
    EXPECT_EQ(l.find_server("a.example.com"), servers[0].get());
    EXPECT_EQ(l.find_server("b.example.com"), servers[1].get());
    EXPECT_EQ(l.find_server("www.other.org"), servers[2].get());
    EXPECT_EQ(l.find_server("api42.test"), servers[3].get());
    EXPECT_EQ(l.find_server("unknown"), servers[1].get());  // default_server
    EXPECT_EQ(l.default_server, servers[1].get());
}

TEST_F(GenerationTest, LocationConfigInheritsFromServerAndHttp) {
    auto gen = build(R"(http { client_max_body_size 5m; keepalive_timeout 10s;
        server { listen 127.0.0.1:1; keepalive_timeout 20s;
            location /a { client_max_body_size 1k; }
            location /b { }
        } })");
    const http::Server& s = *gen->http->servers.at(0);
    size_t idx = http::http_core_index();
    auto conf = [&](const char* uri) -> const http::HttpCoreLocConf& {
        return static_cast<const http::HttpCoreLocConf&>(*s.find_location(uri)->confs[idx]);
    };
    EXPECT_EQ(*conf("/a").client_max_body_size, 1024u);
    EXPECT_EQ(*conf("/b").client_max_body_size, 5u << 20);
    EXPECT_EQ(*conf("/a").keepalive_timeout_ms, 20000u);
}

TEST_F(GenerationTest, ErrorsNameFileAndLine) {
    std::string f = dir_ + "/t.conf";
    EXPECT_EQ(error_of("http {\n foo;\n}"), f + ":3: unknown directive \"foo\"");
    EXPECT_EQ(error_of("http { server { listen 127.0.0.1:1; } }\nworker_connections 5;"),
              f + ":3: \"worker_connections\" directive is not allowed here");
    EXPECT_EQ(error_of("http { keepalive_timeout 1 2; }"),
              f + ":2: invalid number of arguments in \"keepalive_timeout\" directive");
    EXPECT_EQ(error_of("http { keepalive_timeout 5x; }"),
              f + ":2: invalid value \"5x\" in \"keepalive_timeout\" directive");
    EXPECT_EQ(error_of("http { server { listen 127.0.0.1:1; listen 127.0.0.1:1; } }"),
              f + ":2: duplicate listen 127.0.0.1:1");
    EXPECT_NE(error_of("http { server { location ~ ( { } } }").find("invalid regex"),
              std::string::npos);
    EXPECT_EQ(error_of("http { server { return 200 \"$nope\"; } }"),
              f + ":2: unknown \"nope\" variable");
    EXPECT_EQ(error_of(""), f + ":2: no \"http\" section in configuration");
}

TEST_F(GenerationTest, DuplicateDefaultServerIsRejected) {
    std::string e = error_of(R"(http {
        server { listen 127.0.0.1:1 default_server; }
        server { listen 127.0.0.1:1 default_server; }
    })");
    EXPECT_NE(e.find(":4: a duplicate default server for 127.0.0.1:1"), std::string::npos) << e;
}

TEST_F(GenerationTest, CoreDirectives) {
    std::ofstream(dir_ + "/t.conf")
        << "worker_processes 3; pid run.pid; events { worker_connections 77; }\n"
           "http { server { listen 127.0.0.1:1; } }";
    BuildOptions o;
    o.prefix = dir_;
    o.conf_path = "t.conf";
    auto gen = GenerationBuilder::build(o);
    EXPECT_EQ(core_conf(*gen).workers(), 3);
    EXPECT_EQ(core_conf(*gen).connections(), 77u);
    EXPECT_EQ(*core_conf(*gen).pid_path, dir_ + "/run.pid");
}

}  // namespace
}  // namespace tollgate
