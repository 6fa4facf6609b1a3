# tests/bench/web_bench.sh's loader (not a test).
add_executable(phi_web_bench_load ${CMAKE_CURRENT_LIST_DIR}/web_bench_load.cc)
target_link_libraries(phi_web_bench_load PRIVATE phi_services phi_dicom phi_config phi_dcmtk
                      phi_warnings)
