# helpers.mk — test helper programs (included by the Makefile).
#   $(BUILD)/t/forward_once   drives the downstream client (t/40-forward-client.t)

HELPERS    := $(BUILD)/t/forward_once
FWD_OBJ    := $(addprefix $(BUILD)/,net/smtp_client.o msg/message.o msg/msg_store.o core/fdio.o core/log.o core/utf8.o core/clock.o net/dns.o net/tls.o core/config.o core/config_table.o core/netmask.o core/yaml_tree.o msg/envelope.o proto/smtp_parse.o core/stats.o)

$(BUILD)/t/forward_once: t/helpers/forward_once.c $(FWD_OBJ) | $(BUILD)
	@mkdir -p $(BUILD)/t
	$(CC) $(CFLAGS) -o $@ $< $(FWD_OBJ) $(LDFLAGS) $(LDLIBS)

helpers: $(HELPERS)
.PHONY: helpers
