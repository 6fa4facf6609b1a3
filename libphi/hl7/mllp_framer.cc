#include "libphi/hl7/mllp_framer.h"

#include <algorithm>

namespace phi::hl7 {

Status MllpFramer::Fail(Status s) {
  error_ = std::move(s);
  msg_.clear();
  msg_.shrink_to_fit();
  return error_;
}

Status MllpFramer::Feed(std::string_view bytes, std::deque<std::string>* out) {
  if (!error_.ok()) return error_;
  size_t i = 0;
  while (i < bytes.size()) {
    switch (state_) {
      case State::kIdle: {
        size_t start = bytes.find(kMllpStart, i);
        size_t garbage = (start == std::string_view::npos ? bytes.size() : start) - i;
        skipped_run_ += garbage;
        skipped_total_ += garbage;
        if (skipped_run_ > max_) {
          return Fail(Status::InvalidArgument("mllp: too many bytes outside a frame"));
        }
        if (start == std::string_view::npos) return Status::Ok();
        skipped_run_ = 0;
        state_ = State::kInFrame;
        i = start + 1;
        break;
      }
      case State::kInFrame: {
        size_t stop = i;
        while (stop < bytes.size() && bytes[stop] != kMllpEnd1 && bytes[stop] != kMllpStart) {
          ++stop;
        }
        size_t n = stop - i;
        if (msg_.size() + n > max_) {
          return Fail(Status::ResourceExhausted("mllp: message exceeds " + std::to_string(max_) +
                                                " bytes"));
        }
        msg_.append(bytes.data() + i, n);
        i = stop;
        if (i == bytes.size()) return Status::Ok();
        if (bytes[i] == kMllpStart) {
          return Fail(Status::InvalidArgument("mllp: start byte inside a frame"));
        }
        state_ = State::kSawFs;
        ++i;
        break;
      }
      case State::kSawFs: {
        if (bytes[i] != kMllpEnd2) {
          return Fail(Status::InvalidArgument("mllp: end byte not followed by CR"));
        }
        ++i;
        out->push_back(std::move(msg_));
        msg_ = std::string();
        ++messages_;
        state_ = State::kIdle;
        break;
      }
    }
  }
  return Status::Ok();
}

std::string MllpEncode(std::string_view message) {
  std::string r;
  r.reserve(message.size() + 3);
  r.push_back(kMllpStart);
  r.append(message);
  r.push_back(kMllpEnd1);
  r.push_back(kMllpEnd2);
  return r;
}

}  // namespace phi::hl7
