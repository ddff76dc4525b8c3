#include "core/http/body_preread.hpp"

#include <new>

namespace tollgate::http {

namespace {

class Prereader final : public RequestTask {
  public:
    Prereader(Request& r, size_t limit, PrereadDone done, const void* data)
        : r_(r), limit_(limit), done_(done), data_(data) {}

    // Reads what is there. Returns true when the read ahead is over (`result_` set).
    bool step() {
        Buffer& buf = *r_.preread;
        for (;;) {
            if (buf.size() > limit_) {
                result_ = PrereadResult::TooLarge;
                return true;
            }
            BodyRead rd = r_.driver->read_body(r_, buf, limit_ + 1 - buf.size());
            if (rd == BodyRead::Data) continue;
            if (rd == BodyRead::Wait) return false;
            result_ = rd == BodyRead::Done ? PrereadResult::Complete : PrereadResult::Error;
            return true;
        }
    }

    Verdict finish() {
        r_.task = nullptr;
        r_.preread_active = false;
        return done_(r_, data_, result_);
    }

    void on_body_available() override {
        if (aborted_ || !step()) return;
        r_.resume(finish());
    }
    void abort() override {
        aborted_ = true;
        r_.preread_active = false;
    }

  private:
    Request& r_;
    size_t limit_;
    PrereadDone done_;
    const void* data_;
    PrereadResult result_ = PrereadResult::Complete;
    bool aborted_ = false;
};

void destroy_buffer(void* p) {
    static_cast<Buffer*>(p)->~Buffer();
}

}  // namespace

Verdict preread_body(Request& r, size_t limit, PrereadDone done, const void* data) {
    if (r.preread == nullptr) {
        void* mem = r.arena->allocate(sizeof(Buffer), alignof(Buffer));
        r.preread = new (mem) Buffer();
        r.add_cleanup(destroy_buffer, r.preread);
    }
    // Content-Length says at once when the body cannot fit: nothing is read, and the body
    // streams on untouched.
    if (r.head.framing == BodyFraming::ContentLength && r.head.content_length > limit) {
        return done(r, data, PrereadResult::TooLarge);
    }
    if (!r.has_body()) return done(r, data, PrereadResult::Complete);
    void* mem = r.arena->allocate(sizeof(Prereader), alignof(Prereader));
    auto* p = new (mem) Prereader(r, limit, done, data);  // trivially destructible members
    r.preread_active = true;
    if (p->step()) return p->finish();
    r.task = p;
    return Verdict::Suspend;
}

}  // namespace tollgate::http
