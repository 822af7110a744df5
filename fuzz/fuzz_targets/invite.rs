//! Feeds arbitrary bytes to the invite file reader (written to a scratch file, as a member
//! would receive it): size, CBOR, format version, manifest signature and fields, the authority,
//! the certificate's signature, community and validity, and the member it names.
#![no_main]

use hearth_fuzz::{INVITE_MEMBER_SEED, INVITE_NOW, scratch_dir, write};
use hearth_node::home::Invite;
use hearth_protocol::Keypair;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch_dir("invite").join("invite.cbor");
    write(&path, data);
    let member = Keypair::from_seed(INVITE_MEMBER_SEED).member_id();
    let _ = Invite::read(&path, &member, INVITE_NOW);
});
