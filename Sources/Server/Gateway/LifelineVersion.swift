/// The version this binary reports (`lifeline --version`, `lifeline_build_info`, the status page).
public enum LifelineVersion {
    public static let current = "0.5.0"
}
