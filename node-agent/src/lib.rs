//! keelson-node-agent: the kubelet of Keelson. See docs/node-agent.md.
