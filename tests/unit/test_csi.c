/* mod_csi's pure parts: what an inactive client gets at once (XEP-0352
 * §4.2 server behaviour), the queue that keeps the newest presence and chat
 * state per sender, and the Bind2 inline state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../modules/csi/csi_rules.h"

static enum csi_class classify(const char *xml, char *key)
{
    xmppd_stanza *s = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    assert_non_null(s);
    enum csi_class c = csi_classify(s, key, CSI_KEY_MAX);
    xmppd_stanza_unref(s);
    return c;
}

#define URGENT(xml)                                         \
    do {                                                    \
        char k_[CSI_KEY_MAX];                               \
        assert_int_equal(classify(xml, k_), CSI_URGENT);    \
    } while (0)

static void test_urgent(void **state)
{
    (void)state;
    URGENT("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>");
    URGENT("<iq type='result' id='1'/>");
    URGENT("<presence type='subscribe' from='a@b'/>");
    URGENT("<presence type='subscribed' from='a@b'/>");
    URGENT("<message type='chat' from='a@b/c'><body>hi</body></message>");
    URGENT("<message from='a@b/c'><body>hi</body></message>");
    URGENT("<message type='groupchat' from='r@muc/n'><subject>topic</subject></message>");
    URGENT("<message type='error' from='a@b'><error type='cancel'/></message>");
    URGENT("<message from='a@b/c'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>");
    URGENT("<message from='a@b/c'><encrypted xmlns='urn:xmpp:omemo:2'/></message>");
    URGENT("<message from='a@b/c'><openpgp xmlns='urn:xmpp:openpgp:0'>x</openpgp></message>");
    URGENT("<message from='a@b/c'><encryption xmlns='urn:xmpp:eme:0' namespace='x'/></message>");
    URGENT("<message from='a@b/c'><store xmlns='urn:xmpp:hints'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>");
    URGENT("<message from='a@b/c'><propose xmlns='urn:xmpp:jingle-message:0' id='j'/></message>");
    URGENT("<message from='r@muc'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='x@y'/></x></message>");
    URGENT("<message from='a@b'><x xmlns='jabber:x:conference' jid='r@muc'/></message>");
    /* a carbon is as urgent as what it carries */
    URGENT("<message from='me@b'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
           "<message xmlns='jabber:client' type='chat'><body>hi</body></message></forwarded></received></message>");
}

static void test_held_and_keys(void **state)
{
    (void)state;
    char key[CSI_KEY_MAX];
    assert_int_equal(classify("<presence from='a@b/c'><show>away</show></presence>", key), CSI_HOLD);
    assert_string_equal(key, "p a@b/c");
    assert_int_equal(classify("<presence type='unavailable' from='a@b/c'/>", key), CSI_HOLD);
    assert_string_equal(key, "p a@b/c");
    assert_int_equal(classify("<presence type='error' from='a@b/c'/>", key), CSI_HOLD);
    assert_string_equal(key, "");
    assert_int_equal(classify("<message type='chat' from='a@b/c'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
                              "<thread>t</thread><no-store xmlns='urn:xmpp:hints'/></message>", key), CSI_HOLD);
    assert_string_equal(key, "c a@b/c");
    /* receipts and markers wait, but each is kept */
    assert_int_equal(classify("<message from='a@b/c'><received xmlns='urn:xmpp:receipts' id='x'/></message>", key),
                     CSI_HOLD);
    assert_string_equal(key, "");
    assert_int_equal(classify("<message from='a@b/c'><active xmlns='http://jabber.org/protocol/chatstates'/>"
                              "<displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>", key), CSI_HOLD);
    assert_string_equal(key, "");
    assert_int_equal(classify("<message type='headline' from='a@b'><event xmlns='http://jabber.org/protocol/pubsub#event'/>"
                              "</message>", key), CSI_HOLD);
    assert_int_equal(classify("<message from='me@b'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
                              "<message xmlns='jabber:client' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/>"
                              "</message></forwarded></sent></message>", key), CSI_HOLD);
    assert_string_equal(key, ""); /* a carbon is not its sender's own chat state */
    assert_int_equal(classify("<presence/>", key), CSI_HOLD);
    assert_string_equal(key, ""); /* no sender: nothing to replace */
}

static void test_queue_order_and_replacement(void **state)
{
    (void)state;
    csi_queue *q = csi_queue_new();
    assert_non_null(q);
    int items[6];
    void *rep;
    assert_int_equal(csi_queue_push(q, &items[0], "p a@b/c", &rep), 0);
    assert_null(rep);
    assert_int_equal(csi_queue_push(q, &items[1], NULL, &rep), 0);
    assert_int_equal(csi_queue_push(q, &items[2], "p x@y/z", &rep), 0);
    assert_int_equal(csi_queue_push(q, &items[3], "", &rep), 0);
    assert_null(rep);
    /* the newer presence of a@b/c replaces the first and goes last */
    assert_int_equal(csi_queue_push(q, &items[4], "p a@b/c", &rep), 0);
    assert_ptr_equal(rep, &items[0]);
    assert_int_equal(csi_queue_len(q), 4);
    assert_int_equal(csi_queue_push(q, &items[5], "p a@b/c", &rep), 0);
    assert_ptr_equal(rep, &items[4]);
    assert_ptr_equal(csi_queue_pop(q), &items[1]);
    assert_ptr_equal(csi_queue_pop(q), &items[2]);
    assert_ptr_equal(csi_queue_pop(q), &items[3]);
    assert_ptr_equal(csi_queue_pop(q), &items[5]);
    assert_null(csi_queue_pop(q));
    assert_int_equal(csi_queue_len(q), 0);
    csi_queue_free(q);
}

static void test_queue_many_keys(void **state)
{
    (void)state;
    /* 200 contacts changing presence five times: 200 items stay, each the
     * newest of its contact, in the order of their last change */
    csi_queue *q = csi_queue_new();
    static int items[1000];
    char key[64];
    size_t replaced = 0;
    for (int round = 0; round < 5; round++)
        for (int c = 0; c < 200; c++) {
            void *rep;
            snprintf(key, sizeof key, "p c%d@example/r", c);
            assert_int_equal(csi_queue_push(q, &items[round * 200 + c], key, &rep), 0);
            replaced += rep != NULL;
        }
    assert_int_equal(replaced, 800);
    assert_int_equal(csi_queue_len(q), 200);
    for (int c = 0; c < 200; c++)
        assert_ptr_equal(csi_queue_pop(q), &items[800 + c]);
    csi_queue_free(q);
    csi_queue_free(NULL);
}

static void test_inline_state(void **state)
{
    (void)state;
    const char *in[] = { "<inactive xmlns='urn:xmpp:csi:0'/>", "<active xmlns='urn:xmpp:csi:0'/>",
                         "<enable xmlns='urn:xmpp:carbons:2'/>", "<csi xmlns='urn:xmpp:csi:0'/>" };
    int want[] = { 1, 0, -1, -1 };
    for (size_t i = 0; i < 4; i++) {
        xmppd_stanza *s = xmppd_stanza_from_string(in[i], strlen(in[i]), "urn:xmpp:bind:0");
        assert_int_equal(csi_inline_state(s), want[i]);
        xmppd_stanza_unref(s);
    }
    assert_int_equal(csi_inline_state(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urgent),
        cmocka_unit_test(test_held_and_keys),
        cmocka_unit_test(test_queue_order_and_replacement),
        cmocka_unit_test(test_queue_many_keys),
        cmocka_unit_test(test_inline_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
