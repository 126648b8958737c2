fn main() {
    println!("cargo:rerun-if-changed=proto/kms_v2.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/kms_v2.proto"], &["proto"])
        .expect(
            "compiling proto/kms_v2.proto (is protoc installed? apt-get install protobuf-compiler)",
        );
}
