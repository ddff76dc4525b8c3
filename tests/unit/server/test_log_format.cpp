// The access_log module's format compiler, escapers and line buffer, without a server.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "modules/access_log/log_buffer.hpp"
#include "modules/access_log/log_format.hpp"

namespace tollgate::access_log {
namespace {

bool never(http::Request&, std::string_view, uintptr_t, std::string_view&) {
    return false;
}

VariableRegistry registry() {
    VariableRegistry reg;
    reg.add("remote_addr", never);
    reg.add("status", never);
    reg.add_prefix("http_", never);
    return reg;
}

std::string escaped(std::string_view v, Escape e) {
    std::string out;
    append_escaped(out, v, e);
    return out;
}

TEST(LogFormat, ParseEscape) {
    EXPECT_EQ(parse_escape("default"), Escape::Default);
    EXPECT_EQ(parse_escape("json"), Escape::Json);
    EXPECT_EQ(parse_escape("none"), Escape::None);
    EXPECT_FALSE(parse_escape("xml"));
    EXPECT_FALSE(parse_escape(""));
}

TEST(LogFormat, CompilesLiteralsAndVariables) {
    VariableRegistry reg = registry();
    CompiledFormat f;
    ASSERT_EQ(compile_format("$remote_addr - [${status}]x$http_user_agent", reg, f), "");
    ASSERT_EQ(f.ops.size(), 5u);
    EXPECT_TRUE(f.ops[0].variable);
    EXPECT_EQ(f.ops[0].ref.index, reg.find("remote_addr")->index);
    EXPECT_EQ(f.ops[1].literal, " - [");
    EXPECT_TRUE(f.ops[2].variable);
    EXPECT_EQ(f.ops[3].literal, "]x");
    EXPECT_TRUE(f.ops[4].variable);
    EXPECT_EQ(f.ops[4].ref.suffix, "user_agent");
    EXPECT_EQ(f.literal_size, 6u);
}

TEST(LogFormat, ConcatenatedStringsMergeLiterals) {
    VariableRegistry reg = registry();
    CompiledFormat f;
    ASSERT_EQ(compile_format("a ", reg, f), "");
    ASSERT_EQ(compile_format("b $status", reg, f), "");
    ASSERT_EQ(compile_format(" c", reg, f), "");
    ASSERT_EQ(f.ops.size(), 3u);
    EXPECT_EQ(f.ops[0].literal, "a b ");
    EXPECT_TRUE(f.ops[1].variable);
    EXPECT_EQ(f.ops[2].literal, " c");
}

TEST(LogFormat, Errors) {
    VariableRegistry reg = registry();
    CompiledFormat f;
    EXPECT_EQ(compile_format("$nope", reg, f), "unknown \"nope\" variable");
    EXPECT_EQ(compile_format("x $", reg, f), "invalid variable name in \"x $\"");
    EXPECT_EQ(compile_format("${status", reg, f), "the closing bracket in \"${status\" is missing");
    EXPECT_EQ(compile_format("${}", reg, f), "invalid variable name in \"${}\"");
}

TEST(LogFormat, DefaultEscaping) {
    EXPECT_EQ(escaped("plain text/1.0", Escape::Default), "plain text/1.0");
    EXPECT_EQ(escaped("a\"b\\c", Escape::Default), "a\\x22b\\x5Cc");
    EXPECT_EQ(escaped(std::string_view("\x00\x01\n\x1f", 4), Escape::Default),
              "\\x00\\x01\\x0A\\x1F");
    EXPECT_EQ(escaped("\x7f\x80\xff~ ", Escape::Default), "\\x7F\\x80\\xFF~ ");
    EXPECT_EQ(escaped("", Escape::Default), "");
}

TEST(LogFormat, JsonEscaping) {
    EXPECT_EQ(escaped("a\"b\\c", Escape::Json), "a\\\"b\\\\c");
    EXPECT_EQ(escaped("\n\r\t\b\f", Escape::Json), "\\n\\r\\t\\b\\f");
    EXPECT_EQ(escaped(std::string_view("\x00\x01\x1f", 3), Escape::Json), "\\u0000\\u0001\\u001F");
    EXPECT_EQ(escaped("\x7f\xc3\xa9", Escape::Json), "\x7f\xc3\xa9");  // passed through
}

TEST(LogFormat, NoEscaping) {
    std::string_view v("\"\\\n\x01\xff", 5);
    EXPECT_EQ(escaped(v, Escape::None), v);
}

TEST(LogFormat, NotFoundText) {
    EXPECT_EQ(not_found_text(Escape::Default), "-");
    EXPECT_EQ(not_found_text(Escape::None), "-");
    EXPECT_EQ(not_found_text(Escape::Json), "");
}

// A loop whose one timer the test fires by hand.
class FakeTimer final : public Timer {
  public:
    explicit FakeTimer(std::function<void()> on_fire) : on_fire_(std::move(on_fire)) {}
    void start(uint64_t ms) override {
        running_ = true;
        ms_ = ms;
        ++starts_;
    }
    void stop() override { running_ = false; }
    bool running() const override { return running_; }
    void fire() {
        running_ = false;
        on_fire_();
    }

    uint64_t ms_ = 0;
    int starts_ = 0;

  private:
    std::function<void()> on_fire_;
    bool running_ = false;
};

class FakeLoop final : public EventLoop {
  public:
    std::unique_ptr<Timer> make_timer(std::function<void()> on_fire) override {
        auto t = std::make_unique<FakeTimer>(std::move(on_fire));
        timer = t.get();
        return t;
    }
    std::unique_ptr<Stream> connect(const sockaddr*, socklen_t, StreamHandler&, uint64_t) override {
        return nullptr;  // a line buffer never connects
    }
    std::unique_ptr<Resolver> make_resolver(const std::vector<std::string>&, uint64_t, bool,
                                            std::string&) override {
        return nullptr;  // nor resolves
    }
    FakeTimer* timer = nullptr;
};

class LineBufferTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/tollgate-linebuf-XXXXXX";
        int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        ::close(fd);
        path_ = tmpl;
        file_ = std::make_unique<OpenFile>(path_);
        std::string error;
        ASSERT_TRUE(file_->open(error)) << error;
    }
    void TearDown() override { ::unlink(path_.c_str()); }

    std::string contents() const {
        std::ifstream in(path_, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

    std::string path_;
    std::unique_ptr<OpenFile> file_;
    FakeLoop loop_;
};

TEST_F(LineBufferTest, TimerStartsWithFirstLineAndStopsWhenEmpty) {
    LineBuffer b(*file_, 64, 1500, loop_, nullptr);
    ASSERT_NE(loop_.timer, nullptr);
    EXPECT_FALSE(loop_.timer->running());
    b.add("a\n");
    EXPECT_TRUE(loop_.timer->running());
    EXPECT_EQ(loop_.timer->ms_, 1500u);
    b.add("b\n");  // the oldest line's deadline stands: not re-armed
    EXPECT_EQ(loop_.timer->starts_, 1);
    EXPECT_EQ(contents(), "");
    loop_.timer->fire();
    EXPECT_EQ(contents(), "a\nb\n");
    EXPECT_EQ(b.pending(), 0u);
    b.add("c\n");  // a new first line arms it again
    EXPECT_EQ(loop_.timer->starts_, 2);
    b.flush();
    EXPECT_FALSE(loop_.timer->running());
    EXPECT_EQ(contents(), "a\nb\nc\n");
}

TEST_F(LineBufferTest, OverflowWritesPendingFirst) {
    LineBuffer b(*file_, 8, 1000, loop_, nullptr);
    b.add("12345\n");
    b.add("abcd\n");  // does not fit: the pending line goes out, this one waits
    EXPECT_EQ(contents(), "12345\n");
    EXPECT_EQ(b.pending(), 5u);
    EXPECT_TRUE(loop_.timer->running());
    EXPECT_EQ(loop_.timer->starts_, 2);
    b.add("0123456789\n");  // larger than the buffer: flushes, then written on its own
    EXPECT_EQ(contents(), "12345\nabcd\n0123456789\n");
    EXPECT_EQ(b.pending(), 0u);
    EXPECT_FALSE(loop_.timer->running());
}

TEST_F(LineBufferTest, NoTimerWithoutFlush) {
    LineBuffer b(*file_, 64, 0, loop_, nullptr);
    EXPECT_EQ(loop_.timer, nullptr);
    b.add("x\n");
    EXPECT_EQ(contents(), "");
    b.flush();
    EXPECT_EQ(contents(), "x\n");
}

TEST_F(LineBufferTest, FlushGoesToTheFileOpenAtThatTime) {
    LineBuffer b(*file_, 64, 1000, loop_, nullptr);
    b.add("old\n");
    std::string rotated = path_ + ".1";
    ASSERT_EQ(::rename(path_.c_str(), rotated.c_str()), 0);
    b.flush();  // before_reopen
    std::string error;
    ASSERT_TRUE(file_->reopen(error)) << error;
    b.add("new\n");
    b.flush();
    std::ifstream old_in(rotated, std::ios::binary);
    std::ostringstream old_ss;
    old_ss << old_in.rdbuf();
    ::unlink(rotated.c_str());
    EXPECT_EQ(old_ss.str(), "old\n");
    EXPECT_EQ(contents(), "new\n");
}

}  // namespace
}  // namespace tollgate::access_log
