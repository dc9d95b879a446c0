"""The kubevirt-py demo guest: builder (guest.demo_guest) and the files that go into its initramfs."""
