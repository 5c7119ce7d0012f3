# BPF objects and their libbpf skeletons, for every directory that builds one (bpf/,
# bench/, tests/).

# bmc_add_bpf_object(NAME SOURCE CLANG clang [SKELETON] [DEFINES NAME...])
# Compiles SOURCE with clang -target bpf (header dependencies tracked through a depfile)
# into NAME.bpf.o, with -D for each of DEFINES. With SKELETON, bpftool generates
# NAME.skel.h and the INTERFACE library NAME_skel exposes it.
function(bmc_add_bpf_object name src)
  cmake_parse_arguments(ARG "SKELETON" "CLANG" "DEFINES" ${ARGN})
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(defines)
  foreach(d ${ARG_DEFINES})
    list(APPEND defines -D${d})
  endforeach()
  find_program(clang_${ARG_CLANG} ${ARG_CLANG} REQUIRED)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${clang_${ARG_CLANG}} -g -O2 -target bpf -mcpu=v3 -Wall -Werror ${defines}
            -I${BMC_GEN_DIR} -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE}
            -MD -MF ${obj}.d -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${obj}
    DEPFILE ${obj}.d
    DEPENDS ${src} bmc_gen_headers ${BMC_GEN_HEADERS}
    COMMENT "BPF ${name} (${ARG_CLANG})"
    VERBATIM)
  if(ARG_SKELETON)
    set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
    add_custom_command(
      OUTPUT ${skel}
      COMMAND sh -c "${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}.tmp && mv ${skel}.tmp ${skel}"
      DEPENDS ${obj}
      COMMENT "Skeleton ${name}.skel.h"
      VERBATIM)
    add_custom_target(${name}_skel_gen DEPENDS ${skel})
    add_library(${name}_skel INTERFACE)
    target_include_directories(${name}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR})
    target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
    add_dependencies(${name}_skel ${name}_skel_gen)
  else()
    add_custom_target(${name}_obj ALL DEPENDS ${obj})
  endif()
endfunction()
