"""End-to-end vend tests: a hub started from a configuration folder, its vend engine driving
the serial board emulator and the payment devices and gateways over their real protocols."""
