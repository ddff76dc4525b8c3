// The ssl_session_ticket_key file format (nginx's): 48 or 80 bytes, split into name, AES and
// HMAC keys in nginx's order; and the key ring's rotation.
#include <gtest/gtest.h>

#include <string>

#include "modules/ssl/ticket_keys.hpp"

using tollgate::ssl::parse_ticket_key;
using tollgate::ssl::TicketKey;
using tollgate::ssl::TicketKeyRing;

namespace {
std::string counting(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i);
    return s;
}
}  // namespace

TEST(TicketKeys, FortyEightBytesAreNameAesHmac) {
    TicketKey k;
    std::string error;
    ASSERT_TRUE(parse_ticket_key(counting(48), k, error)) << error;
    EXPECT_EQ(k.size, 48u);
    EXPECT_EQ(k.key_length(), 16u);
    EXPECT_EQ(k.name[0], 0);
    EXPECT_EQ(k.name[15], 15);
    EXPECT_EQ(k.aes_key[0], 16);
    EXPECT_EQ(k.aes_key[15], 31);
    EXPECT_EQ(k.hmac_key[0], 32);
    EXPECT_EQ(k.hmac_key[15], 47);
}

TEST(TicketKeys, EightyBytesAreNameHmacAes) {
    TicketKey k;
    std::string error;
    ASSERT_TRUE(parse_ticket_key(counting(80), k, error)) << error;
    EXPECT_EQ(k.size, 80u);
    EXPECT_EQ(k.key_length(), 32u);
    EXPECT_EQ(k.hmac_key[0], 16);
    EXPECT_EQ(k.hmac_key[31], 47);
    EXPECT_EQ(k.aes_key[0], 48);
    EXPECT_EQ(k.aes_key[31], 79);
}

TEST(TicketKeys, OtherLengthsAreRefused) {
    for (size_t n : {0u, 1u, 16u, 47u, 49u, 79u, 81u, 4096u}) {
        TicketKey k;
        std::string error;
        EXPECT_FALSE(parse_ticket_key(counting(n), k, error)) << n;
        EXPECT_EQ(error, "must be 48 or 80 bytes, not " + std::to_string(n));
    }
}

TEST(TicketKeys, RingKeepsTheNewestFirstAndIsBounded) {
    TicketKeyRing ring;
    for (int i = 0; i < 5; ++i) {
        TicketKey k;
        k.name[0] = static_cast<unsigned char>(i);
        ring.rotate(k, 3);
    }
    ASSERT_EQ(ring.keys().size(), 3u);
    EXPECT_EQ(ring.keys()[0].name[0], 4);
    EXPECT_EQ(ring.keys()[1].name[0], 3);
    EXPECT_EQ(ring.keys()[2].name[0], 2);
}
