package drivers_test

import (
	"testing"

	"remora.dev/remora/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
