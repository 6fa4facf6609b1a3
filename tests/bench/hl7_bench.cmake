# hl7_bench: durable HL7 ACK throughput/latency vs an echo ACK (tests/bench/hl7_bench.sh).
add_executable(phi_hl7_bench ${CMAKE_CURRENT_LIST_DIR}/hl7_bench.cc)
target_link_libraries(phi_hl7_bench PRIVATE phi_hl7 phi_services phi_config phi_tls phi_warnings)
