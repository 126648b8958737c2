//! placeholder
use super::Test;
pub fn tests() -> Vec<Test> { vec![] }
