# helpers.mk — test helper programs (included by the Makefile).
#   $(BUILD)/t/forward_once   drives the downstream client (t/40-forward-client.t)

HELPERS    := $(BUILD)/t/forward_once
FWD_OBJ    := $(addprefix $(BUILD)/,net/smtp_client.o msg/message.o msg/msg_store.o msg/msg_stream.o proto/smtp_stuff.o core/fdio.o core/log.o core/utf8.o core/clock.o net/dns.o net/tls.o core/config.o core/config_table.o core/netmask.o core/yaml_tree.o msg/envelope.o proto/smtp_parse.o core/stats.o)

$(BUILD)/t/forward_once: t/helpers/forward_once.c $(FWD_OBJ) | $(BUILD)
	@mkdir -p $(BUILD)/t
	$(CC) $(CFLAGS) -o $@ $< $(FWD_OBJ) $(LDFLAGS) $(LDLIBS)

helpers: $(HELPERS)
.PHONY: helpers

# $(BUILD)/kasi-test     kasi with the test hooks of msg/spool_io.c compiled
#                        in (a stalled fsync on demand; t/47-spool-async.t)
HELPERS    += $(BUILD)/kasi-test
$(BUILD)/t/spool_io_test.o: src/msg/spool_io.c | $(BUILD)
	@mkdir -p $(BUILD)/t
	$(CC) $(CPPFLAGS) $(CFLAGS) -DKASI_TEST_HOOKS -c -o $@ $<

$(BUILD)/kasi-test: $(filter-out $(BUILD)/msg/spool_io.o,$(OBJ)) $(BUILD)/t/spool_io_test.o
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)
-include $(BUILD)/t/spool_io_test.d
