//! Simulated Chinese personal names for the generated roster (common GB2312 characters only).

use super::rng::Rng;

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
    "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "贾", "夏",
    "韦", "付", "方", "白", "邹", "孟", "熊", "秦", "邱", "江", "尹", "薛", "段", "雷", "侯", "龙",
    "史", "陶", "黎", "贺", "顾", "毛", "郝", "龚", "邵", "万", "钱", "严", "武", "戴", "莫", "孔",
    "向", "汤", "纳", "海", "撒", "拓",
];

const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "文", "玉", "兰", "建", "国", "红", "梅", "志",
    "新", "德", "荣", "春", "东", "海", "林", "亮", "成", "宁", "波", "斌", "辉", "鹏", "飞", "琴",
    "云", "凤", "洁", "萍", "莉", "晨", "雪", "燕", "丹", "婷", "宇", "浩", "鑫", "佳", "俊", "欣",
    "瑞", "永", "福", "生", "安", "嘉", "慧", "倩", "蕾", "思", "雨", "晓", "莹", "颖", "琳", "彬",
    "峰", "龙", "凯", "翔", "博", "昊", "天", "子", "怡", "梓", "睿", "泽", "轩", "阳", "光", "学",
    "金", "银", "宝", "山", "川", "忠", "诚", "信", "义", "礼", "贵", "富", "长", "清", "正", "和",
];

/// A plausible two- or three-character name.
pub fn person_name(rng: &mut Rng) -> String {
    let mut name = String::from(*rng.pick(SURNAMES));
    name.push_str(GIVEN[rng.index(GIVEN.len())]);
    if rng.chance(0.7) {
        name.push_str(GIVEN[rng.index(GIVEN.len())]);
    }
    name
}

/// 一, 二, … for team numbering (1..=99).
pub fn chinese_number(n: u32) -> String {
    const DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    match n {
        0..=9 => DIGITS[n as usize].to_owned(),
        10 => "十".to_owned(),
        11..=19 => format!("十{}", DIGITS[(n % 10) as usize]),
        _ if n.is_multiple_of(10) => format!("{}十", DIGITS[(n / 10 % 10) as usize]),
        _ => format!(
            "{}十{}",
            DIGITS[(n / 10 % 10) as usize],
            DIGITS[(n % 10) as usize]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_numbers() {
        assert_eq!(chinese_number(1), "一");
        assert_eq!(chinese_number(10), "十");
        assert_eq!(chinese_number(12), "十二");
        assert_eq!(chinese_number(30), "三十");
        assert_eq!(chinese_number(47), "四十七");
    }

    #[test]
    fn names_have_two_or_three_characters() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let n = person_name(&mut rng).chars().count();
            assert!((2..=3).contains(&n));
        }
    }
}
