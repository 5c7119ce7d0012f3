#include "mc_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

namespace bmc::test {

McUdp::McUdp(int fd, const char *server_ip, int port) : d_(fd) {
    if (std::string(server_ip).find(':') != std::string::npos) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(std::uint16_t(port));
        inet_pton(AF_INET6, server_ip, &a.sin6_addr);
        connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
        return;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(port));
    inet_pton(AF_INET, server_ip, &a.sin_addr);
    connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
}

}  // namespace bmc::test
