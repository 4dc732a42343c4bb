#!/bin/sh
# provision e2e: as anaconda-dracut does for inst.repo/inst.stage2, claim the root so dracut
# goes on to bring up the network and run the initqueue (the hook powers the machine off there)
[ -z "$root" ] && root="provision-e2e" && rootok=1
