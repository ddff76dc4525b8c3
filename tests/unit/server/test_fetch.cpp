// core/http/fetch against real sockets: a real libevent loop and a peer thread that accepts on
// 127.0.0.1 and answers with canned bytes (well-formed, malformed, oversized, slow or none).
// Waits are bounded (run_until gives up after 10 s); nothing asserts on durations.

#include <arpa/inet.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/http/fetch.hpp"
#include "worker/libevent_loop.hpp"

namespace tollgate {
namespace {

// Accepts one connection, reads the request head (and a Content-Length body), answers with
// `reply` (nothing when empty, then holds the connection for `hold_ms`) and closes.
class Peer {
  public:
    explicit Peer(std::string reply, int hold_ms = 0) : reply_(std::move(reply)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        socklen_t len = sizeof(a);
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        ::listen(fd_, 4);
        thread_ = std::thread([this, hold_ms] { serve(hold_ms); });
    }
    ~Peer() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
    }
    uint16_t port() const { return port_; }
    std::string received() {
        std::lock_guard<std::mutex> g(mu_);
        return received_;
    }

  private:
    void serve(int hold_ms) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        timeval tv{0, 200000};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        std::string in;
        char buf[4096];
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!stop_ && std::chrono::steady_clock::now() < deadline) {
            size_t end = in.find("\r\n\r\n");
            if (end != std::string::npos) {
                size_t cl = in.find("Content-Length: ");
                size_t want = 0;
                if (cl != std::string::npos && cl < end) want = std::stoul(in.substr(cl + 16));
                if (in.size() >= end + 4 + want) break;
            }
            ssize_t n = ::recv(c, buf, sizeof(buf), 0);
            if (n == 0) break;
            if (n > 0) in.append(buf, static_cast<size_t>(n));
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            received_ = in;
        }
        if (!reply_.empty()) {
            size_t off = 0;
            while (off < reply_.size()) {
                ssize_t n = ::send(c, reply_.data() + off, reply_.size() - off, MSG_NOSIGNAL);
                if (n <= 0) break;
                off += static_cast<size_t>(n);
            }
        }
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(hold_ms);
        while (!stop_ && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        ::close(c);
    }

    std::string reply_;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::string received_;
};

class FetchTest : public ::testing::Test {
  protected:
    void SetUp() override {
        base_ = event_base_new();
        loop_ = std::make_unique<worker::LibeventLoop>(base_);
    }
    void TearDown() override {
        loop_.reset();
        event_base_free(base_);
    }

    http::FetchRequest request(uint16_t port, std::string path = "/jwks") {
        http::FetchRequest r;
        std::string error;
        EXPECT_TRUE(
            http::parse_fetch_url("http://127.0.0.1:" + std::to_string(port) + path, r.url, error))
            << error;
        EXPECT_TRUE(http::resolve_fetch_host(r.url, r.addresses, error)) << error;
        r.timeout_ms = 3000;
        return r;
    }

    // Runs the loop until `done` or 10 s.
    void run_until(const std::function<bool()>& done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    http::FetchResult run(http::FetchRequest req) {
        http::FetchResult out;
        int calls = 0;
        auto h = http::fetch(*loop_, std::move(req), [&](http::FetchResult& r) {
            ++calls;
            out = r;
        });
        EXPECT_EQ(calls, 0) << "called back from inside fetch()";
        run_until([&] { return calls > 0; });
        EXPECT_EQ(calls, 1);
        return out;
    }

    event_base* base_ = nullptr;
    std::unique_ptr<worker::LibeventLoop> loop_;
};

TEST(FetchUrl, Parses) {
    http::FetchUrl u;
    std::string e;
    ASSERT_TRUE(http::parse_fetch_url("https://idp.example.com/.well-known/jwks.json", u, e));
    EXPECT_TRUE(u.https);
    EXPECT_EQ(u.host, "idp.example.com");
    EXPECT_EQ(u.port, 443);
    EXPECT_EQ(u.target, "/.well-known/jwks.json");
    EXPECT_EQ(u.authority(), "idp.example.com");
    ASSERT_TRUE(http::parse_fetch_url("HTTP://[::1]:8080?x=1", u, e));
    EXPECT_FALSE(u.https);
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.port, 8080);
    EXPECT_EQ(u.target, "/?x=1");
    EXPECT_EQ(u.authority(), "[::1]:8080");
    ASSERT_TRUE(http::parse_fetch_url("http://a", u, e));
    EXPECT_EQ(u.target, "/");
    for (const char* bad :
         {"ftp://a/", "http://", "http://:80/", "http://a:0/", "http://a:65536/", "http://a:/",
          "http://u@a/", "http://a/#f", "http://a /", "http://[::1/", "http://[zz]/", "http://a b/",
          "//a/", "http://a:8x/"}) {
        EXPECT_FALSE(http::parse_fetch_url(bad, u, e)) << bad;
    }
}

TEST_F(FetchTest, ContentLength) {
    Peer p(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
    auto req = request(p.port());
    req.headers.emplace_back("Accept", "application/json");
    http::FetchResult r = run(std::move(req));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "{\"a\":1}");
    ASSERT_NE(r.header("content-type"), nullptr);
    EXPECT_EQ(*r.header("content-type"), "application/json");
    std::string got = p.received();
    EXPECT_EQ(got.rfind("GET /jwks HTTP/1.1\r\n", 0), 0u) << got;
    EXPECT_NE(got.find("\r\nHost: 127.0.0.1:" + std::to_string(p.port()) + "\r\n"),
              std::string::npos);
    EXPECT_NE(got.find("\r\nAccept: application/json\r\n"), std::string::npos);
    EXPECT_NE(got.find("\r\nConnection: close\r\n"), std::string::npos);
}

TEST_F(FetchTest, PostBodyAndInformational) {
    Peer p(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n");
    auto req = request(p.port(), "/introspect");
    req.method = "POST";
    req.body = "token=abc&token_type_hint=access_token";
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    http::FetchResult r = run(std::move(req));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "abcde");
    std::string got = p.received();
    EXPECT_EQ(got.rfind("POST /introspect HTTP/1.1\r\n", 0), 0u);
    EXPECT_NE(got.find("\r\nContent-Length: 38\r\n"), std::string::npos);
    EXPECT_NE(got.find("\r\n\r\ntoken=abc&token_type_hint=access_token"), std::string::npos);
}

TEST_F(FetchTest, UntilCloseAndErrorStatus) {
    Peer p("HTTP/1.0 503 Service Unavailable\r\n\r\nbusy");
    http::FetchResult r = run(request(p.port()));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, "busy");
}

TEST_F(FetchTest, MalformedReplies) {
    for (const char* reply : {
             "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
             "SSH-2.0-OpenSSH\r\n\r\n",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
             "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
             "HTTP/1.1 200 OK\r\nContent-Le",
         }) {
        Peer p(reply);
        http::FetchResult r = run(request(p.port()));
        EXPECT_FALSE(r.ok) << reply;
        EXPECT_FALSE(r.error.empty());
        EXPECT_TRUE(r.body.empty());
    }
}

TEST_F(FetchTest, OversizedBodies) {
    std::string big(5000, 'x');
    {
        Peer p("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + big);
        auto req = request(p.port());
        req.max_body = 4096;
        http::FetchResult r = run(std::move(req));
        EXPECT_FALSE(r.ok);
        EXPECT_EQ(r.error, "response body too large");
    }
    {
        Peer p("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + big +
               "\r\n0\r\n\r\n");
        auto req = request(p.port());
        req.max_body = 4096;
        http::FetchResult r = run(std::move(req));
        EXPECT_FALSE(r.ok);
        EXPECT_EQ(r.error, "response body too large");
    }
    {
        Peer p("HTTP/1.1 200 OK\r\n\r\n" + big);
        auto req = request(p.port());
        req.max_body = 4096;
        http::FetchResult r = run(std::move(req));
        EXPECT_FALSE(r.ok);
        EXPECT_EQ(r.error, "response body too large");
    }
}

TEST_F(FetchTest, Timeout) {
    Peer p("", 3000);  // reads the request, never answers
    auto req = request(p.port());
    req.timeout_ms = 300;
    http::FetchResult r = run(std::move(req));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "timeout");
}

TEST_F(FetchTest, Refused) {
    uint16_t port;
    {
        Peer p("x");  // a port that was just free
        port = p.port();
        int c = ::socket(AF_INET, SOCK_STREAM, 0);  // let the peer thread finish
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        ::close(c);
    }
    http::FetchResult r = run(request(port));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "connect failed");
}

TEST_F(FetchTest, BadRequestReportedLater) {
    auto req = request(1);
    req.headers.emplace_back("X-Bad", "a\r\nInjected: 1");
    http::FetchResult r = run(std::move(req));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "invalid request header value");
    auto tls = request(1);
    tls.url.https = true;
    r = run(std::move(tls));
    EXPECT_FALSE(r.ok);
}

TEST_F(FetchTest, CancelledNeverCallsBack) {
    Peer p("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 300);
    int calls = 0;
    auto h = http::fetch(*loop_, request(p.port()), [&](http::FetchResult&) { ++calls; });
    // Let it connect and send (the peer has the request), then cancel.
    run_until([&] { return !p.received().empty(); });
    h.reset();
    // And one cancelled before the loop ever ran.
    auto h2 = http::fetch(*loop_, request(p.port()), [&](http::FetchResult&) { ++calls; });
    h2.reset();
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    run_until([&] { return std::chrono::steady_clock::now() > until; });
    EXPECT_EQ(calls, 0);
}

TEST_F(FetchTest, CallbackMayDestroyHandle) {
    Peer p("HTTP/1.1 204 No Content\r\n\r\n");
    std::unique_ptr<http::Fetch> h;
    int status = 0;
    h = http::fetch(*loop_, request(p.port()), [&](http::FetchResult& r) {
        status = r.status;
        h.reset();
    });
    run_until([&] { return status != 0; });
    EXPECT_EQ(status, 204);
    EXPECT_EQ(h, nullptr);
}

}  // namespace
}  // namespace tollgate
