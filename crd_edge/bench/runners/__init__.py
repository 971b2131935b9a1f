"""Where a measurement runs: this machine, an Android phone over adb, a Linux board over ssh."""
