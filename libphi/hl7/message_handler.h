// phi::hl7::MessageHandler: what Hl7Server calls for each complete message,
// and ConnectionInfo, what it knows about the peer.
// Thread-safety: HandleAsync() is called concurrently from the io threads, for
// different connections; calls for one connection are made one after the
// other, in arrival order, but may overlap with earlier ones still committing.
#pragma once

#include <openssl/crypto.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "libphi/tls/peer_identity.h"

namespace phi::hl7 {

struct ConnectionInfo {
  uint64_t id = 0;           // server-unique connection id
  std::string listener;      // "hl7-tls" or "hl7"
  std::string peer_address;  // textual IP
  uint16_t peer_port = 0;
  bool tls = false;
  std::optional<tls::PeerIdentity> identity;  // verified client certificate, if any
};

// A one-NUL-byte "ACK" that is never sent: see MessageHandler::Handle.
inline const std::string kNoReply(1, '\0');

class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  // Returns the complete ACK message (without MLLP framing) to send back.
  // An empty string means "no MSH could be read": the server logs it and closes
  // the connection. kNoReply means "send nothing, read the next message"
  // (enhanced mode, MSH-15 NE/ER/SU). Must never log or keep `message`
  // beyond what it stores.
  virtual std::string Handle(std::string_view message, const ConnectionInfo& conn) = 0;

  // What Hl7Server calls, on an io thread: it must not block. `done` gets
  // what Handle() would have returned; it is called exactly once, from any
  // thread, possibly before HandleAsync returns. `conn` is only valid during
  // the call. Messages of one connection may overlap (the server reads ahead
  // while earlier ones commit); the server sends their ACKs in arrival order.
  // The default calls Handle() inline: right for handlers that never block
  // (NotImplementedHandler); a handler that waits for storage overrides it.
  // Call `done` once and drop it: it holds the connection (keeping a copy
  // keeps the connection open, and Hl7Server's destructor waits for it).
  using AckCallback = std::function<void(std::string ack)>;
  virtual void HandleAsync(std::string message, const ConnectionInfo& conn, AckCallback done) {
    std::string ack = Handle(message, conn);
    OPENSSL_cleanse(message.data(), message.size());
    done(std::move(ack));
  }
};

}  // namespace phi::hl7
