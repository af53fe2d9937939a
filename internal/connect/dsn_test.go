package connect

import (
	"strings"
	"testing"
)

func TestParseDSNErrorsHideThePassword(t *testing.T) {
	for _, dsn := range []string{
		`host=h password='it\'s S3cretPW' sslmode=bogus`,
		`postgres://u:S3cretPW@h:notaport/db`,
		`host=h password=S3cretPW port=x`,
	} {
		_, err := ParseDSN(dsn)
		if err == nil {
			t.Fatalf("%s parsed", dsn)
		}
		if strings.Contains(err.Error(), "S3cret") || !strings.HasPrefix(err.Error(), "the connection string cannot be parsed: ") {
			t.Errorf("%s: %v", dsn, err)
		}
	}
	if cfg, err := ParseDSN("postgres://u:pw@h:5433/db?sslmode=disable"); err != nil || cfg.Port != 5433 || cfg.Password != "pw" {
		t.Fatalf("valid DSN: %v %v", cfg, err)
	}
}
