"""The trust domain shared by registry, signer and executor: the manifest model, its canonical bytes,
policy, and signature checks. Never imports grpc; messages.py alone maps it to and from the generated
protobuf messages (so that mapping exists once), and nothing else here imports them."""
