fn main() {
    println!("cargo:rerun-if-changed=keelson.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["keelson.proto"], &["."])
        .expect("compiling keelson.proto (is protoc installed? apt-get install protobuf-compiler)");
}
