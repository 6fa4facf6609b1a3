// phi::hl7::Hl7Server: the HL7 v2 MLLP front (phi::Server) on the shared
// AsioRunner: a TLS listener (hl7.tls; client certificate per the provider's
// policy) and an optional plain listener (hl7.plain) that accepts only peers in
// hl7.allowed_networks and closes everyone else at once.
//
// Each connection runs on its own strand and is pipelined: frames are handed
// to MessageHandler::HandleAsync (on the io thread; the handler queues the
// durable work and calls back when it is done) while the connection reads
// ahead, up to 16 messages / max_message_bytes in flight; the ACKs go out
// strictly in arrival order, coalesced into one write when several are
// ready. A peer that sends one message at a time (most RIS) simply has one
// in flight. A peer that half-closes gets its pending ACKs, then the close.
// Idle timeout between messages, read timeout inside one; max_message_bytes
// enforced while reading; max_connections over both listeners (beyond it new
// connections are closed immediately).
// Never logs message content: only ids, peer addresses, sizes and reasons.
// Thread-safety: the phi::Server contract (Start/Reload/StopAccepting/Drain
// from the daemon's thread; Listeners() from any thread).
#pragma once

#include <memory>

#include "libphi/config/config.h"
#include "libphi/config/server.h"
#include "libphi/hl7/message_handler.h"
#include "libphi/tls/asio_runner.h"
#include "libphi/tls/tls_context_provider.h"

namespace phi::hl7 {

class Hl7Server : public Server {
 public:
  // `tls_provider` may be null only when hl7.tls is disabled. The provider,
  // runner and handler must outlive the server; the destructor waits for the
  // handler's callbacks of messages still in flight.
  static Result<std::unique_ptr<Hl7Server>> Create(const config::Hl7Config& cfg,
                                                   tls::TlsContextProvider* tls_provider,
                                                   tls::AsioRunner& runner,
                                                   MessageHandler& handler);
  ~Hl7Server() override;

  Status Start() override;
  // Reloads cfg.tls into the provider (when TLS is on) and swaps allowed_networks.
  Status Reload(const config::Config& cfg) override;
  void StopAccepting() override;
  void Drain(MonotonicTime deadline) override;
  std::vector<ListenerStatus> Listeners() const override;

  // Bound ports after Start() (useful with port 0); 0 when disabled.
  uint16_t tls_port() const;
  uint16_t plain_port() const;

  struct Impl;

 private:
  explicit Hl7Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace phi::hl7
